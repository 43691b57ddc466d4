"""``ReasonCode``: one vocabulary for the solver's reasons, the code the loop records, the
metrics' reason label and the API's ``Reason.code``."""

from __future__ import annotations

import pytest

from scheduler import metrics
from scheduler.domain import (
    Explanation,
    Reason,
    ReasonCode,
    SiteVerdict,
    WorkloadState,
    primary_reason_code,
)
from scheduler.service import convert

C = ReasonCode
PERMANENT = {C.SLO, C.RESIDENCY, C.GPU_MODEL, C.SIZE}


def reasons(*codes: ReasonCode) -> list[Reason]:
    return [Reason(c, f"because {c}", "site") for c in codes]


# (behaviour, codes of the reasons in order, final, the code recorded)
PRIMARY = [
    ("capacity_when_there_is_no_reason", (), False, C.CAPACITY),
    ("capacity_when_a_final_verdict_has_no_reason", (), True, C.CAPACITY),
    ("the_first_code_of_a_final_verdict", (C.SLO, C.CAPACITY), True, C.SLO),
    ("size_for_a_final_verdict_that_starts_with_size", (C.SIZE, C.RESIDENCY), True, C.SIZE),
    ("the_first_code_that_can_change_when_pending", (C.SLO, C.SIZE, C.PRIORITY, C.CAPACITY),
        False, C.PRIORITY),
    ("capacity_over_an_earlier_size_when_pending", (C.SIZE, C.CAPACITY), False, C.CAPACITY),
    ("error_when_pending_after_a_solver_failure", (C.ERROR,), False, C.ERROR),
    ("the_first_permanent_code_when_pending_has_only_those", (C.RESIDENCY, C.SLO), False,
        C.RESIDENCY),
]  # fmt: skip


@pytest.mark.parametrize(
    ("codes", "final", "expected"), [pytest.param(*c[1:], id=c[0]) for c in PRIMARY]
)
def test_primary_reason_code_records(
    codes: tuple[ReasonCode, ...], final: bool, expected: ReasonCode
) -> None:
    assert primary_reason_code(reasons(*codes), final) is expected


def test_the_permanent_codes_are_slo_residency_gpu_model_and_size() -> None:
    assert {c for c in ReasonCode if c.permanent} == PERMANENT


@pytest.mark.parametrize("code", list(ReasonCode))
def test_a_pending_workload_skips_a_code_exactly_when_it_is_permanent(code: ReasonCode) -> None:
    # what the loop treats as "holds whatever the capacity" is the enum's permanent set
    later = C.PRIORITY if code is not C.PRIORITY else C.CAPACITY
    skipped = primary_reason_code(reasons(code, later), final=False) is later
    assert skipped == code.permanent


@pytest.mark.parametrize("code", list(ReasonCode))
def test_every_reason_code_is_a_metric_label_value(code: ReasonCode) -> None:
    assert code.value in metrics.REASON_LABELS
    assert metrics.reason_label(code) == code.value
    assert metrics.reason_label(code.value) == code.value


def test_the_metric_label_values_are_every_code_and_other() -> None:
    assert set(metrics.REASON_LABELS) == {c.value for c in ReasonCode} | {"other"}
    assert "error" in metrics.REASON_LABELS


@pytest.mark.parametrize("code", ["", "made up code!", "Capacity", "rack", "x" * 40])
def test_an_unknown_code_is_labelled_other(code: str) -> None:
    assert metrics.reason_label(code) == "other"


def test_the_unschedulable_counter_has_a_series_for_every_label_value() -> None:
    (family,) = [
        m
        for m in metrics.REGISTRY.collect()
        if m.name == "valley_workloads_unschedulable"  # the family of the _total counter
    ]
    labels = {s.labels["reason"] for s in family.samples}
    assert labels == set(metrics.REASON_LABELS)


def test_a_reason_given_its_code_as_a_string_holds_the_enum_member() -> None:
    r = Reason("size", "one replica needs ...")  # type: ignore[arg-type]
    assert r.code is ReasonCode.SIZE
    assert r.code == "size" and f"{r.code}" == "size"


def test_a_reason_with_an_unknown_code_is_refused() -> None:
    with pytest.raises(ValueError, match="colour"):
        Reason("colour", "blue")  # type: ignore[arg-type]


@pytest.mark.parametrize("code", list(ReasonCode))
def test_the_api_reason_code_is_the_enum_value(code: ReasonCode) -> None:
    e = Explanation("s", (SiteVerdict("near", False, reasons(code)),))
    out = convert.explanation_to_proto(e, WorkloadState.PENDING, ())
    assert out.sites[0].reasons[0].code == code.value
    assert type(out.sites[0].reasons[0].code) is str
