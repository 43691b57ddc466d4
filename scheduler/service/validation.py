"""Request rules beyond one spec's own (``WorkloadSpec.violations``): request size, request_id,
and values the domain accepts but no client means (absurd durations, priorities, labels).

Every rule yields its violations rather than raising the first: a client learns all that is
wrong with a request at once (``Violations`` gathers them into one ``ValidationErrors``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

from scheduler.domain import (
    Scenario,
    ValidationError,
    ValidationErrors,
    WorkloadSpec,
    shorten,
)

MAX_WORKLOADS_PER_REQUEST = 1000
MAX_REQUEST_ID = 253
MAX_DURATION_S = 10 * 366 * 24 * 3600  # ten years
MAX_PRIORITY = 1_000_000
MAX_LIST = 64  # allowed_sites and gpu_models entries
MAX_ID = 253
# violations listed in an error: enough to fix a request in one go, few enough that the error's
# trailer stays far below the metadata limit (~8 KB) of gRPC clients
MAX_VIOLATIONS = 100
MAX_VIOLATION_BYTES = 4000


class Violations:
    """Gathers a request's violations: the first ``MAX_VIOLATIONS`` (and at most about
    ``MAX_VIOLATION_BYTES`` of them) are kept, all are counted."""

    def __init__(self) -> None:
        self.kept: list[ValidationError] = []
        self.total = 0
        self._bytes = 0

    def add(self, violations: Iterable[ValidationError]) -> bool:
        """Gather ``violations``; whether there were any."""
        before = self.total
        for v in violations:
            self.total += 1
            size = len(v.field) + len(v.message)
            if len(self.kept) < MAX_VIOLATIONS and self._bytes + size <= MAX_VIOLATION_BYTES:
                self.kept.append(v)
                self._bytes += size
        return self.total > before

    def check(self) -> None:
        """Raise ``ValidationErrors`` when anything was gathered."""
        if self.total:
            raise ValidationErrors(self.kept or [ValidationError("", "invalid")], self.total)


def text_violations(value: str, field: str) -> Iterator[ValidationError]:
    """Text that every store can hold: PostgreSQL text cannot contain NUL characters."""
    if "\x00" in value:
        yield ValidationError(field, "must not contain NUL characters")


def check_text(value: str, field: str) -> None:
    for violation in text_violations(value, field):
        raise violation


def request_id_violations(request_id: str) -> Iterator[ValidationError]:
    yield from text_violations(request_id, "request_id")
    if len(request_id) > MAX_REQUEST_ID:
        yield ValidationError(
            "request_id", f"must be at most {MAX_REQUEST_ID} characters (got {len(request_id)})"
        )


def count_violations(n: int) -> Iterator[ValidationError]:
    if n > MAX_WORKLOADS_PER_REQUEST:
        yield ValidationError(
            "workloads", f"at most {MAX_WORKLOADS_PER_REQUEST} workloads per request (got {n})"
        )


def deadline_violations(spec: WorkloadSpec, now: datetime, field: str) -> Iterator[ValidationError]:
    """API.md "Time": a deadline that cannot be met (``now + duration_s > deadline``, ``now``
    being when the workload is created) is refused."""
    if spec.deadline is None or not 0 <= spec.duration_s <= MAX_DURATION_S:
        return  # an absurd duration is refused as such (spec_violations)
    if now + timedelta(seconds=spec.duration_s) > spec.deadline:
        p = f"{field}." if field else ""
        yield ValidationError(
            f"{p}deadline",
            f"cannot be met: created at {now.isoformat(timespec='seconds')} and running "
            f"{spec.duration_s} s, it ends after the deadline "
            f"{spec.deadline.isoformat(timespec='seconds')}",
        )


def spec_violations(
    spec: WorkloadSpec, scenario: Scenario, field: str
) -> Iterator[ValidationError]:
    """Every rule of API.md ``spec`` breaks, each naming its field under ``field``."""
    p = f"{field}." if field else ""
    for name in ("tenant", "name", "origin"):
        yield from text_violations(getattr(spec, name), f"{p}{name}")
    for name in ("allowed_sites", "gpu_models"):
        for i, v in enumerate(getattr(spec, name)):
            yield from text_violations(v, f"{p}{name}[{i}]")
    for k, v in spec.labels.items():
        yield from text_violations(k + v, f"{p}labels[{shorten(k, 40)!r}]")
    yield from spec.violations(scenario, field)
    if spec.duration_s > MAX_DURATION_S:
        yield ValidationError(
            f"{p}duration_s", f"must be at most {MAX_DURATION_S} s (got {spec.duration_s})"
        )
    if not -MAX_PRIORITY <= spec.priority <= MAX_PRIORITY:
        yield ValidationError(
            f"{p}priority", f"must be within +-{MAX_PRIORITY} (got {spec.priority})"
        )
    for name, values in (("allowed_sites", spec.allowed_sites), ("gpu_models", spec.gpu_models)):
        if len(values) > MAX_LIST:
            yield ValidationError(f"{p}{name}", f"at most {MAX_LIST} entries (got {len(values)})")
    seen: set[str] = set()
    for i, s in enumerate(spec.allowed_sites):
        if s in seen:
            yield ValidationError(f"{p}allowed_sites[{i}]", f"duplicate site {shorten(s)!r}")
        seen.add(s)
    if spec.origin and len(spec.origin) > MAX_ID:
        yield ValidationError(f"{p}origin", "too long")
