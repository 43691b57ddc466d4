"""Request rules beyond one spec's own (``WorkloadSpec.validate``): request size, request_id,
and values the domain accepts but no client means (absurd durations, priorities, labels)."""

from __future__ import annotations

from scheduler.domain import Scenario, ValidationError, WorkloadSpec

MAX_WORKLOADS_PER_REQUEST = 1000
MAX_REQUEST_ID = 253
MAX_DURATION_S = 10 * 366 * 24 * 3600  # ten years
MAX_PRIORITY = 1_000_000
MAX_LIST = 64  # allowed_sites and gpu_models entries
MAX_ID = 253


def check_text(value: str, field: str) -> None:
    """Text that every store can hold: PostgreSQL text cannot contain NUL characters."""
    if "\x00" in value:
        raise ValidationError(field, "must not contain NUL characters")


def check_request_id(request_id: str) -> None:
    check_text(request_id, "request_id")
    if len(request_id) > MAX_REQUEST_ID:
        raise ValidationError(
            "request_id", f"must be at most {MAX_REQUEST_ID} characters (got {len(request_id)})"
        )


def check_count(n: int) -> None:
    if n > MAX_WORKLOADS_PER_REQUEST:
        raise ValidationError(
            "workloads", f"at most {MAX_WORKLOADS_PER_REQUEST} workloads per request (got {n})"
        )


def check_spec(spec: WorkloadSpec, scenario: Scenario, field: str) -> WorkloadSpec:
    """Every rule of API.md for one spec; raises ValidationError naming the field."""
    p = f"{field}." if field else ""
    for name in ("tenant", "name", "origin"):
        check_text(getattr(spec, name), f"{p}{name}")
    for name in ("allowed_sites", "gpu_models"):
        for i, v in enumerate(getattr(spec, name)):
            check_text(v, f"{p}{name}[{i}]")
    for k, v in spec.labels.items():
        check_text(k + v, f"{p}labels[{k[:40]!r}]")
    spec.validate(scenario, field)
    if spec.duration_s > MAX_DURATION_S:
        raise ValidationError(
            f"{p}duration_s", f"must be at most {MAX_DURATION_S} s (got {spec.duration_s})"
        )
    if not -MAX_PRIORITY <= spec.priority <= MAX_PRIORITY:
        raise ValidationError(
            f"{p}priority", f"must be within +-{MAX_PRIORITY} (got {spec.priority})"
        )
    for name, values in (("allowed_sites", spec.allowed_sites), ("gpu_models", spec.gpu_models)):
        if len(values) > MAX_LIST:
            raise ValidationError(f"{p}{name}", f"at most {MAX_LIST} entries (got {len(values)})")
    for i, s in enumerate(spec.allowed_sites):
        if s in spec.allowed_sites[:i]:
            raise ValidationError(f"{p}allowed_sites[{i}]", f"duplicate site {s!r}")
    if spec.origin and len(spec.origin) > MAX_ID:
        raise ValidationError(f"{p}origin", "too long")
    return spec
