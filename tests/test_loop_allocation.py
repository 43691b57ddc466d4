"""The capacity PLACED workloads hold: taken and given back with the holder's record, all
replicas or none, and completions on schedule."""

from __future__ import annotations

from datetime import UTC, datetime

from scheduler.domain import Cluster, ReplicaPlacement, Scenario, Workload, WorkloadState
from scheduler.loop.allocation import Allocation
from tests.test_loop_support import cpu, same_capacity, used_cpu

PLACED_AT = datetime(2025, 7, 1, 4, 0, tzinfo=UTC)


def placed(wid: str, cores: int, *nodes: str, duration_s: int = 0) -> Workload:
    reps = tuple(ReplicaPlacement(i, n.split("/")[0], n) for i, n in enumerate(nodes))
    spec = cpu(cores, replicas=len(nodes), duration_s=duration_s)
    return Workload(wid, spec, WorkloadState.PLACED, reps, placed_at=PLACED_AT)


def test_a_restored_workload_holds_its_capacity_until_released(tiny: Scenario) -> None:
    a = Allocation(tiny)
    assert a.restore(placed("w", 1, "near/cpu-0000", "green/cpu-0001"))
    assert used_cpu(a.cluster) == 2000 and len(a) == 1
    assert a.release("w")
    assert not a.release("w")  # nothing held any more
    assert same_capacity(a.cluster, Cluster(tiny))


def test_a_stored_placement_that_no_longer_fits_is_not_held_at_all(tiny: Scenario) -> None:
    a = Allocation(tiny)
    assert a.restore(placed("big", 3, "near/cpu-0000"))
    assert not a.restore(placed("w", 2, "near/cpu-0001", "near/cpu-0000"))
    assert used_cpu(a.cluster) == 3000 and len(a) == 1
    assert not a.release("w")


def test_due_workloads_are_popped_in_order_and_can_be_rescheduled(tiny: Scenario) -> None:
    a = Allocation(tiny)
    t0 = PLACED_AT.timestamp()
    a.restore(placed("late", 1, "near/cpu-0000", duration_s=60))
    a.restore(placed("early", 1, "near/cpu-0001", duration_s=30))
    a.restore(placed("forever", 1, "green/cpu-0000"))
    assert a.next_due() == t0 + 30
    assert a.pop_due(t0 + 10) == []
    due = a.pop_due(t0 + 60)
    assert [w.id for w in due] == ["early", "late"]
    assert a.next_due() is None
    a.reschedule(due)
    a.release("early")  # cancelled meanwhile: off the schedule
    assert [w.id for w in a.pop_due(t0 + 60)] == ["late"]


def test_an_adopted_cluster_holds_the_placed_workloads(tiny: Scenario) -> None:
    a = Allocation(tiny)
    w = placed("w", 2, "near/cpu-0000")
    trial = a.cluster.copy()
    trial.allocate(trial.index["near/cpu-0000"], w.spec.resources)
    a.adopt(trial, [w])
    assert used_cpu(a.cluster) == 2000
    assert a.release("w")
    assert used_cpu(a.cluster) == 0


def test_moves_hold_every_workload_when_one_lands_where_another_left(tiny: Scenario) -> None:
    # one rebalance plan: "b" takes the room on near/cpu-0000 that "c" leaves for green. Taken
    # one workload at a time in the plan's order, b's new placement would not fit beside c
    # (not moved yet): b would be held nowhere and run unaccounted
    a = Allocation(tiny)
    assert a.restore(placed("c", 3, "near/cpu-0000"))
    assert a.restore(placed("b", 2, "near/cpu-0001"))
    a.moved([placed("b", 2, "near/cpu-0000"), placed("c", 3, "green/cpu-0000")])
    assert len(a) == 2 and used_cpu(a.cluster) == 5000
    on = a.cluster.index
    assert a.cluster.free_cpu[on["near/cpu-0000"]] == 2000
    assert a.cluster.free_cpu[on["near/cpu-0001"]] == 4000
    assert a.cluster.free_cpu[on["green/cpu-0000"]] == 1000
