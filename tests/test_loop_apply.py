"""Applying a solver's answer to a cluster (``scheduler.loop.apply``), on the tiny scenario: a
pure function of the batch, the result and the cluster."""

from __future__ import annotations

from typing import Any

import pytest

from scheduler.domain import (
    CapacityError,
    Cluster,
    Cost,
    Reason,
    ReplicaPlacement,
    Resources,
    Scenario,
    Workload,
    WorkloadSpec,
)
from scheduler.loop.apply import (
    allocate_cpu_work,
    allocate_replicas,
    apply_result,
    reason_code,
    release_replicas,
)
from scheduler.solver import PlacementResult, SolveStatus, Unplaced
from tests.test_loop_support import cpu, same_capacity


def placements(*nodes: str) -> tuple[ReplicaPlacement, ...]:
    return tuple(ReplicaPlacement(i, n.split("/")[0], n) for i, n in enumerate(nodes))


def test_cpu_placements_applied_at_once_match_one_by_one_allocation(tiny: Scenario) -> None:
    a = Workload("a", cpu(2, replicas=2))
    b = Workload("b", cpu(1))
    c = Workload("c", WorkloadSpec(tenant="t", resources=Resources(500, 2048)))
    placed = [
        (a, placements("near/cpu-0000", "near/cpu-0001")),
        (b, placements("near/cpu-0000")),
        (c, placements("green/cpu-0002")),
    ]
    at_once = Cluster(tiny)
    assert allocate_cpu_work(at_once, placed)
    one_by_one = Cluster(tiny)
    for w, reps in placed:
        for p in reps:
            one_by_one.allocate(one_by_one.index[p.node], w.spec.resources)
    assert same_capacity(at_once, one_by_one)
    assert at_once.free_cpu[at_once.index["near/cpu-0000"]] == 4000 - 2000 - 1000


@pytest.mark.parametrize(
    "case",
    [
        # 3 + 2 cores on one 4-core node: the second replica does not fit
        [(cpu(3), ("near/cpu-0000",)), (cpu(2), ("near/cpu-0000",))],
        [(cpu(1), ("near/cpu-9999",))],  # no such node
        [(cpu(1), ("near/cpu-0000",), (0,))],  # GPU indices for CPU work
    ],
    ids=["over-capacity", "unknown-node", "gpu-indices"],
)
def test_cpu_placements_that_cannot_all_be_applied_leave_the_cluster_unchanged(
    tiny: Scenario, case: list[tuple[Any, ...]]
) -> None:
    placed = []
    for i, (spec, nodes, *gpus) in enumerate(case):
        reps = tuple(
            ReplicaPlacement(r, n.split("/")[0], n, 0.0, gpus[0] if gpus else ())
            for r, n in enumerate(nodes)
        )
        placed.append((Workload(f"w{i}", spec), reps))
    cluster = Cluster(tiny)
    before = cluster.copy()
    assert not allocate_cpu_work(cluster, placed)
    assert same_capacity(cluster, before)


def result(
    placements: dict[str, tuple[ReplicaPlacement, ...]], unplaced: tuple[Unplaced, ...] = ()
) -> PlacementResult:
    return PlacementResult(
        "valley",
        SolveStatus.OPTIMAL,
        placements,
        {u.workload_id: u for u in unplaced},
        {wid: Cost(1.0, 0.1, 100.0) for wid in placements},
        0.0,
    )


def test_a_result_sorts_the_batch_into_placed_pending_and_unschedulable(tiny: Scenario) -> None:
    batch = [Workload(wid, cpu(1)) for wid in ("placed", "waits", "never", "forgotten")]
    capacity = Reason("capacity", "no room", resource="cpu_millis")
    slo = Reason("slo", "too far")
    answer = result(
        {"placed": placements("near/cpu-0000")},
        (
            Unplaced("waits", False, "waits for room", (slo, capacity)),
            Unplaced("never", True, "can never be placed", (slo,)),
        ),
    )
    cluster = Cluster(tiny)
    decided = apply_result(batch, answer, cluster)
    assert list(decided.placed) == ["placed"]
    assert decided.placed["placed"] == (placements("near/cpu-0000"), Cost(1.0, 0.1, 100.0))
    assert {wid: u.code for wid, u in decided.pending.items()} == {
        "waits": "capacity",  # the reason capacity can change, though slo came first
        "forgotten": "capacity",  # neither placed nor unplaced: tried again
    }
    assert decided.pending["waits"].reasons == (slo, capacity)
    assert {wid: u.code for wid, u in decided.unschedulable.items()} == {"never": "slo"}
    assert cluster.free_cpu[cluster.index["near/cpu-0000"]] == 3000


def test_a_placement_that_does_not_fit_is_rejected_and_takes_no_capacity(tiny: Scenario) -> None:
    share = WorkloadSpec(tenant="t", resources=Resources(1000, 1024, gpu_millis=600), replicas=2)
    # two replicas of 600 millis on one GPU: the second does not fit there
    gpu = "green/gpu-0000"
    reps = (
        ReplicaPlacement(0, "green", gpu, 0.0, (0,)),
        ReplicaPlacement(1, "green", gpu, 0.0, (0,)),
    )
    batch = [Workload("gpu", share), Workload("cpu", cpu(1))]
    answer = result({"gpu": reps, "cpu": placements("near/cpu-9999")})  # no such node
    cluster = Cluster(tiny)
    decided = apply_result(batch, answer, cluster)
    assert decided.placed == {}
    assert {wid: u.message for wid, u in decided.pending.items()} == {
        "gpu": "does not fit now: placement rejected",
        "cpu": "does not fit now: placement rejected",
    }
    assert same_capacity(cluster, Cluster(tiny))


@pytest.mark.parametrize(
    ("nodes", "cores"),
    [
        (("near/cpu-0000", "near/cpu-9999"), 1),  # the second replica's node does not exist
        (("near/cpu-0000", "near/cpu-0000"), 3),  # 3 + 3 cores on a 4-core node
    ],
    ids=["unknown-node", "over-capacity"],
)
def test_replicas_that_do_not_all_fit_take_no_capacity(
    tiny: Scenario, nodes: tuple[str, ...], cores: int
) -> None:
    cluster = Cluster(tiny)
    with pytest.raises((CapacityError, KeyError)):
        allocate_replicas(cluster, cpu(cores).resources, placements(*nodes))
    assert same_capacity(cluster, Cluster(tiny))


def test_released_replicas_give_back_what_they_took(tiny: Scenario) -> None:
    w = Workload("w", cpu(1, replicas=2))
    reps = placements("near/cpu-0000", "green/cpu-0001")
    cluster = Cluster(tiny)
    allocate_replicas(cluster, w.spec.resources, reps)
    assert not same_capacity(cluster, Cluster(tiny))
    release_replicas(cluster, w, reps)
    assert same_capacity(cluster, Cluster(tiny))


@pytest.mark.parametrize(
    ("codes", "final", "expected"),
    [
        (("slo", "capacity"), False, "capacity"),  # pending: what capacity can change
        (("slo", "capacity"), True, "slo"),  # final: the first reason
        (("residency", "gpu_model"), False, "residency"),  # nothing capacity can change
        ((), False, "capacity"),
        (("size", "gang"), False, "gang"),  # size never changes: waits for the gang
    ],
    ids=str,
)
def test_the_reason_code_of_an_unplaced_workload(
    codes: tuple[str, ...], final: bool, expected: str
) -> None:
    assert reason_code([Reason(c, "") for c in codes], final) == expected


def test_a_placement_on_a_node_cordoned_since_the_solve_waits_and_takes_nothing(
    tiny: Scenario,
) -> None:
    batch = [Workload("late", cpu(1)), Workload("fine", cpu(1))]
    answer = result({"late": placements("near/cpu-0000"), "fine": placements("near/cpu-0001")})
    cluster = Cluster(tiny)
    decided = apply_result(batch, answer, cluster, cordoned={"near/cpu-0000"})
    assert list(decided.placed) == ["fine"]
    assert decided.pending["late"].message == "its node was cordoned since: tried again"
    assert cluster.free_cpu[cluster.index["near/cpu-0000"]] == 4000
