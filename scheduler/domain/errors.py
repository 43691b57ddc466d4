"""Errors of the domain layer. Every one names the field (or file and key) that is wrong."""

from __future__ import annotations

from collections.abc import Sequence

ECHO_LIMIT = 100


def shorten(text: str, limit: int = ECHO_LIMIT) -> str:
    """``text`` cut to about ``limit`` characters: what an error message may echo of a client's
    value (a megabyte-long name must not come back whole, nor push an error past the metadata
    limit). Every echo of a client's text goes through here."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...({len(text)} characters)"


class ValidationError(ValueError):
    """A value that breaks a rule of the domain; ``field`` is a dotted path such as
    ``workloads[3].resources.cpu_millis``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


class ScenarioError(ValueError):
    """A scenario file that cannot be loaded: names the file, the key and what is wrong."""

    def __init__(self, path: str, key: str, message: str) -> None:
        super().__init__(f"{path}: {key}: {message}" if key else f"{path}: {message}")
        self.path = path
        self.key = key
        self.message = message


class ValidationErrors(ValidationError):
    """Every field violation of one request (the first ``len(violations)`` of ``total``); reads
    as the first one, with how many more there are."""

    def __init__(self, violations: Sequence[ValidationError], total: int) -> None:
        first = violations[0]
        more = f" (and {total - 1} more)" if total > 1 else ""
        super().__init__(first.field, first.message + more)
        self.violations = tuple(violations)
        self.total = total
