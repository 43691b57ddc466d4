"""Placement rules as a client sees them over gRPC: every workload ends PLACED, PENDING with a
reason or UNSCHEDULABLE with a reason, and every placement holds node capacity, SLO, residency,
GPU model, GANG and SPREAD as ListSites(include_nodes=true) shows the nodes."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler.domain import Scenario
from tests.test_service_support import (
    PENDING,
    PLACED,
    UNSCHEDULABLE,
    consistent_view,
    mixed_specs,
    placement_violations,
    serve,
    wait_settled,
)


@pytest.fixture(scope="module")
def small_valley(beijing_hebei: Scenario) -> Scenario:
    """beijing-hebei scaled down to 23 nodes in E-Town and 52 in Zhangbei (one node per GPU
    pool), so 2,000 workloads overflow it and some must wait."""
    return beijing_hebei.scaled({"etown": 0.02, "zhangbei": 0.01})


def run_mix(scenario: Scenario, tmp_path: Path, n: int, seed: int) -> list[pb.Workload]:
    rng = random.Random(seed)
    specs = mixed_specs(rng, n, scenario)
    with serve(scenario, tmp_path) as (_, client):
        for i in range(0, n, 100):
            client.submit(specs[i : i + 100])
        wait_settled(client)
        workloads, sites = consistent_view(client)
    assert len(workloads) == n
    problems = placement_violations(workloads, sites)
    assert problems == [], "\n".join(problems[:20])
    return workloads


def test_two_thousand_mixed_workloads_all_end_placed_or_with_a_reason(
    small_valley: Scenario, tmp_path: Path
) -> None:
    workloads = run_mix(small_valley, tmp_path, 2000, seed=1)
    states = Counter(w.state for w in workloads)
    assert set(states) <= {PLACED, PENDING, UNSCHEDULABLE}
    # the mix overflows the scaled-down cluster and contains impossible workloads
    assert states[PLACED] > 0 and states[PENDING] > 0 and states[UNSCHEDULABLE] > 0


def test_mixed_workloads_on_the_full_beijing_hebei_scenario(
    beijing_hebei: Scenario, tmp_path: Path
) -> None:
    workloads = run_mix(beijing_hebei, tmp_path, 600, seed=2)
    states = Counter(w.state for w in workloads)
    assert states[PLACED] > 0.8 * len(workloads)
    assert all(w.reason for w in workloads if w.state == UNSCHEDULABLE)
