"""A rebalance through the loop: every workload a plan moves is held where it went, however the
plan's moves chain (one lands on a node another left in the same plan)."""

from __future__ import annotations

from datetime import timedelta

from scheduler.domain import Cost, ReplicaPlacement, Scenario, Workload
from scheduler.store import CycleCommit, Store
from tests.test_loop_support import (
    Clock,
    clock_fixture,  # noqa: F401
    cpu,
    running,
    store_fixture,  # noqa: F401
    used_cpu,
)


def placed_at(
    store: Store, clock: Clock, name: str, cores: int, duration_s: int, *at: tuple[str, int]
) -> Workload:
    """A workload stored PLACED with replica i on node ``at[i][0]``, started ``at[i][1]``
    minutes ago."""
    spec = cpu(cores, name=name, replicas=len(at), duration_s=duration_s)
    (w,) = store.submit("", "", [spec], clock.now).workloads
    reps = tuple(
        ReplicaPlacement(i, node.split("/")[0], node, start_time=clock.now - timedelta(minutes=m))
        for i, (node, m) in enumerate(at)
    )
    store.commit_cycle(CycleCommit({w.id: w}, {w.id: (reps, Cost())}, {}, {}, clock.now))
    return store.get(w.id)


def test_every_moved_workload_is_held_when_one_lands_where_another_left(
    store: Store, tiny: Scenario, clock: Clock
) -> None:
    # the plan: "c" first (near/cpu-0000 -> green/cpu-0002, an awake node); then green/cpu-0000
    # empties onto cpu-0001 ("a" and "b"'s replica there); last, c's other replica leaves the
    # dear site for the now empty green/cpu-0000. Held one workload at a time in the plan's
    # order (the store's: c, submitted first, first), c would land there beside a and b (not
    # moved yet): held nowhere, running unaccounted, its room given to new work
    c = placed_at(store, clock, "c", 3, 3600, ("near/cpu-0000", 8), ("near/cpu-0001", 14))
    placed_at(store, clock, "a", 1, 4 * 3600, ("green/cpu-0000", 20))
    placed_at(store, clock, "b", 1, 2 * 3600, ("green/cpu-0002", 6), ("green/cpu-0000", 22))
    placed_at(store, clock, "d", 2, 2 * 3600, ("green/cpu-0001", 19))
    with running(store, tiny, clock, solver_process=False) as loop:
        plan = loop.rebalance(False, 0, (), timeout=30)
        assert (c.id, "green/cpu-0000") in {(m.workload_id, m.to_node) for m in plan.moves}
        held = loop.snapshot().cluster
        assert used_cpu(held) == 11_000  # every replica of a, b, c and d
        assert held.free_cpu[held.index["green/cpu-0000"]] == 1000  # c's 3 cores, only
