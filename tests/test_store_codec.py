"""Specs as stored: the JSON written directly for plain specs is the general encoder's."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from scheduler.domain import Resources, Topology, WorkloadKind, WorkloadSpec
from scheduler.store.codec import _spec_to_json, spec_from_json, spec_to_json

SPECS = {
    "minimal": WorkloadSpec(tenant="t", resources=Resources(1, 1)),
    "service with an SLO": WorkloadSpec(
        tenant="tenant-3",
        name="web",
        resources=Resources(500, 1024),
        replicas=2,
        origin="zhongguancun",
        max_latency_ms=2.5,
        priority=-3,
        kind=WorkloadKind.SERVICE,
        duration_s=3600,
        topology=Topology.SPREAD,
        min_sites=2,
    ),
    "GPU share, huge numbers": WorkloadSpec(
        tenant="t", resources=Resources(10**7, 2**30, 0, 999), max_latency_ms=1e-7, priority=10**6
    ),
    "text json must escape": WorkloadSpec(
        tenant='a"b\\c', name="名前\n\t\x01 é 🙂", resources=Resources(1, 1), origin="o/p"
    ),
    "an int SLO (json writes 5, not 5.0)": WorkloadSpec(
        tenant="t",
        resources=Resources(1, 1),
        max_latency_ms=5,
    ),
    "with lists, labels and a deadline": WorkloadSpec(
        tenant="t",
        resources=Resources(1, 1),
        deadline=datetime(2025, 7, 1, 4, 0, 0, 250000, tzinfo=UTC),
        allowed_sites=("near",),
        gpu_models=("A800",),
        labels={"k": "v"},
    ),
}


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_a_spec_is_stored_as_the_general_encoder_writes_it_and_reads_back_equal(
    spec: WorkloadSpec,
) -> None:
    text = spec_to_json(spec)
    assert text == _spec_to_json(spec)
    assert spec_from_json(text) == spec
