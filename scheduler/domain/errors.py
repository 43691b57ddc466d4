"""Errors of the domain layer. Every one names the field (or file and key) that is wrong."""

from __future__ import annotations


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
