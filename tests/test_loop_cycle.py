"""The scheduling loop over a real SQLite store and the real solver, on the tiny scenario."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from scheduler.domain import Cluster, Resources, Scenario, Workload, WorkloadSpec
from scheduler.loop import CycleReport, LoopConfig, SchedulingLoop
from scheduler.solver import SolverParams
from scheduler.store import Store
from tests.test_loop_support import (
    Clock,
    Recorder,
    S,
    clock_fixture,  # noqa: F401
    cpu,
    recorder_fixture,  # noqa: F401
    same_capacity,
    state,
    store_fixture,  # noqa: F401
    submit,
    until,
    used_cpu,
)


@pytest.fixture
def loop(
    store: Store, tiny: Scenario, clock: Clock, recorder: Recorder
) -> Iterator[SchedulingLoop]:
    lp = SchedulingLoop(
        store, tiny, observers=[recorder], config=LoopConfig(batch_window_s=0.01), clock=clock
    )
    lp.start()
    yield lp
    lp.stop()


def test_submitted_workloads_are_placed_and_the_cluster_holds_them(
    store: Store, loop: SchedulingLoop, recorder: Recorder
) -> None:
    ws = submit(store, loop, cpu(2), cpu(1, replicas=3))
    until(lambda: all(state(store, w) == S.PLACED for w in ws))
    assert loop.wait_idle(10)  # the counters follow the commit
    snap = loop.snapshot()
    assert used_cpu(snap.cluster) == 5000
    assert snap.counts_by_state[S.PLACED] == 2
    assert recorder.submitted == [w.id for w in ws]
    placed = [w.id for c in recorder.cycles for w in c.placed]
    assert sorted(placed) == sorted(w.id for w in ws)
    assert all(
        w.placed_at is not None and w.created_at is not None
        for c in recorder.cycles
        for w in c.placed
    )


def test_a_workload_that_can_never_fit_becomes_unschedulable_with_the_reason(
    store: Store, loop: SchedulingLoop
) -> None:
    (w,) = submit(store, loop, cpu(64))  # larger than every node of the tiny scenario
    until(lambda: state(store, w) == S.UNSCHEDULABLE)
    assert store.get(w.id).reason
    assert loop.wait_idle(10)  # the counters follow the commit
    assert loop.snapshot().unschedulable_by_reason == {"size": 1}


def test_a_pending_workload_records_what_can_change_not_a_site_too_small_for_it(
    store: Store, tiny: Scenario, clock: Clock
) -> None:
    # with CPU work allowed on GPU nodes, a 6-core replica fits only green's 8-core GPU node
    # (near's nodes have 4 cores: size, permanent); the higher-priority one takes it, so the
    # other waits for priority, not for a site it can never use
    params = SolverParams(cpu_on_gpu_nodes=True)
    lp = SchedulingLoop(store, tiny, params, config=LoopConfig(batch_window_s=0.01), clock=clock)
    lp.start()
    try:
        high, low = submit(store, lp, cpu(6, priority=5), cpu(6))
        until(lambda: state(store, high) == S.PLACED and store.get(low.id).reason != "")
        assert state(store, low) == S.PENDING
        assert lp.wait_idle(10)  # the counters follow the commit
        assert lp.snapshot().pending_by_reason == {"priority": 1}
    finally:
        lp.stop()


def test_a_cancel_frees_capacity_that_a_waiting_workload_then_gets(
    store: Store, loop: SchedulingLoop, recorder: Recorder
) -> None:
    # tiny has 5 CPU-only nodes of 4 cores: five 4-core workloads fill it
    full = submit(store, loop, *[cpu(4) for _ in range(5)])
    until(lambda: all(state(store, w) == S.PLACED for w in full))
    (late,) = submit(store, loop, cpu(4))
    until(lambda: store.get(late.id).reason != "")
    assert store.get(late.id).state == S.PENDING
    assert loop.wait_idle(10)  # the counters follow the commit
    assert loop.snapshot().pending_by_reason == {"capacity": 1}
    cycles_before = loop.cycles
    time.sleep(0.1)
    assert loop.cycles == cycles_before, "a full cluster must not be retried every cycle"
    freed_node = store.get(full[0].id).placements[0].node
    change = store.cancel(full[0].id, datetime.now(UTC))
    loop.state_changed(change.workload, change.previous_state)
    until(lambda: state(store, late) == S.PLACED)
    assert store.get(late.id).placements[0].node == freed_node  # the only node with room
    assert loop.wait_idle(10)
    snap = loop.snapshot()
    assert snap.counts_by_state[S.PLACED] == 5
    assert snap.counts_by_state[S.CANCELLED] == 1
    assert snap.pending_by_reason == {}
    assert (full[0].id, S.PLACED, S.CANCELLED) in recorder.changes


def test_workloads_with_a_duration_complete_and_free_their_capacity(
    store: Store, loop: SchedulingLoop, clock: Clock, recorder: Recorder
) -> None:
    (w,) = submit(store, loop, cpu(4, duration_s=60))
    until(lambda: state(store, w) == S.PLACED)
    clock.now += timedelta(seconds=61)
    loop.wake()
    until(lambda: state(store, w) == S.COMPLETED)
    until(lambda: loop.snapshot().counts_by_state.get(S.COMPLETED) == 1)
    snap = loop.snapshot()
    assert used_cpu(snap.cluster) == 0
    assert (w.id, S.PLACED, S.COMPLETED) in recorder.changes


def test_a_restarted_loop_rebuilds_the_same_cluster_and_resumes_pending_work(
    store: Store, tiny: Scenario, clock: Clock
) -> None:
    first = SchedulingLoop(store, tiny, config=LoopConfig(batch_window_s=0.0), clock=clock)
    first.start()
    gpu = WorkloadSpec(tenant="t", resources=Resources(1000, 1024, 0, 300))
    ws = submit(store, first, cpu(3), gpu, gpu, cpu(1, replicas=2))
    until(lambda: all(state(store, w) == S.PLACED for w in ws))
    before = first.snapshot().cluster
    first.stop()
    (queued,) = store.submit("", "", [cpu(1)], clock.now).workloads  # accepted while down
    second = SchedulingLoop(store, tiny, config=LoopConfig(batch_window_s=0.0), clock=clock)
    second.start()
    try:
        assert same_capacity(second.snapshot().cluster, before)
        until(lambda: state(store, queued) == S.PLACED)
        assert second.wait_idle(10)
        assert second.snapshot().counts_by_state[S.PLACED] == 5
    finally:
        second.stop()


def test_snapshot_hour_and_month_are_local_to_the_scenario(loop: SchedulingLoop) -> None:
    snap = loop.snapshot()
    assert (snap.hour, snap.month) == (12, 7)  # 04:00 UTC is noon in Asia/Shanghai


@pytest.mark.parametrize(
    "kw",
    [{"rest_ratio": -0.1}, {"rest_ratio": 11.0}, {"max_rest_s": -1.0}, {"rest_from_batch": 0}],
    ids=str,
)
def test_loop_config_refuses_a_rest_out_of_range(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="rest"):
        LoopConfig(**kw)  # type: ignore[arg-type]


def test_a_loop_that_rests_after_each_cycle_still_places_every_burst(
    store: Store, tiny: Scenario, clock: Clock, recorder: Recorder
) -> None:
    lp = SchedulingLoop(
        store,
        tiny,
        observers=[recorder],
        config=LoopConfig(batch_window_s=0.0, rest_ratio=10.0, max_rest_s=0.2, rest_from_batch=1),
        clock=clock,
    )
    lp.start()
    try:
        ws = [w for _ in range(3) for w in submit(store, lp, cpu(1), cpu(1))]
        until(lambda: all(state(store, w) == S.PLACED for w in ws))

        # observers hear of a cycle after its commit, so the last report may follow the store
        def reported() -> list[str]:
            return sorted(w.id for c in recorder.cycles for w in c.placed)

        until(lambda: len(reported()) >= len(ws), timeout=5.0)
        assert reported() == sorted(w.id for w in ws)
    finally:
        lp.stop()


def test_a_backlog_with_no_new_submissions_is_placed_without_resting(
    store: Store, tiny: Scenario, clock: Clock
) -> None:
    lp = SchedulingLoop(
        store,
        tiny,
        config=LoopConfig(batch_window_s=0.0, rest_ratio=10.0, rest_from_batch=1),
        clock=clock,
    )
    sub = store.submit("", "", [cpu(1) for _ in range(4)], clock.now)  # queued while down
    lp.start()
    try:
        until(lambda: all(state(store, w) == S.PLACED for w in sub.workloads))
        assert lp._rest_until == 0.0  # nothing else wanted the CPU: no rest was taken
    finally:
        lp.stop()


def test_large_batches_are_solved_with_the_lp_bound_only_and_small_ones_with_the_mip_bound(
    store: Store, tiny: Scenario, clock: Clock, recorder: Recorder
) -> None:
    # the solver reports mip_seconds when it computed the MIP bound (nodes to wake exist)
    lp = SchedulingLoop(
        store,
        tiny,
        observers=[recorder],
        config=LoopConfig(batch_window_s=0.2, lp_bound_from_batch=3, solver_process=False),
        clock=clock,
    )
    lp.start()
    try:
        small = submit(store, lp, cpu(1), cpu(1))
        until(lambda: all(state(store, w) == S.PLACED for w in small))
        large = submit(store, lp, cpu(1), cpu(1), cpu(1))
        until(lambda: all(state(store, w) == S.PLACED for w in large))
    finally:
        lp.stop()
    by_batch = {c.batch_workloads: c.result.stats for c in recorder.cycles}
    assert set(by_batch) == {2, 3}
    assert by_batch[2].mip_seconds is not None
    assert by_batch[3].mip_seconds is None


class SubmitsDuringCycles:
    """Submits one more workload from each of the first cycles (before the loop decides whether
    to rest) and notes the rest the loop had set before each cycle."""

    def __init__(self, store: Store, cycles: int) -> None:
        self.store = store
        self.left = cycles
        self.loop: SchedulingLoop | None = None
        self.rest_before: list[float] = []
        self.added: list[Workload] = []

    def on_submitted(self, workloads: Sequence[Workload]) -> None:
        pass

    def on_state_change(self, workload: Workload, old: S) -> None:
        pass

    def on_cycle(self, report: CycleReport) -> None:
        assert self.loop is not None
        self.rest_before.append(self.loop._rest_until)
        if self.left > 0:
            self.left -= 1
            self.added += submit(self.store, self.loop, cpu(1))


def test_a_full_batch_with_work_left_over_is_followed_by_the_next_cycle_without_rest(
    store: Store, tiny: Scenario, clock: Clock
) -> None:
    queued = store.submit("", "", [cpu(1) for _ in range(6)], clock.now).workloads
    spy = SubmitsDuringCycles(store, cycles=2)
    lp = SchedulingLoop(
        store,
        tiny,
        observers=[spy],
        config=LoopConfig(
            batch_window_s=0.0,
            max_batch_workloads=2,
            rest_ratio=10.0,
            max_rest_s=5.0,
            rest_from_batch=1,
            solver_process=False,
        ),
        clock=clock,
    )
    spy.loop = lp
    lp.start()
    try:
        until(lambda: all(state(store, w) == S.PLACED for w in [*queued, *spy.added]))
    finally:
        lp.stop()
    # new work arrived during each of the first cycles, but work was left over after them
    assert spy.rest_before[:3] == [0.0, 0.0, 0.0]


def test_a_loop_whose_solver_process_died_goes_on_placing(
    store: Store, tiny: Scenario, clock: Clock
) -> None:
    lp = SchedulingLoop(store, tiny, config=LoopConfig(batch_window_s=0.01), clock=clock)
    lp.start()
    try:
        first = submit(store, lp, cpu(1))
        until(lambda: all(state(store, w) == S.PLACED for w in first))
        assert lp._solver is not None and lp._solver.pid is not None
        os.kill(lp._solver.pid, signal.SIGKILL)
        then = submit(store, lp, cpu(1), cpu(2))
        until(lambda: all(state(store, w) == S.PLACED for w in then))
    finally:
        lp.stop()
    assert used_cpu(lp.snapshot().cluster) == 4000


def test_each_batch_is_solved_on_the_capacity_the_batch_before_took_before_it_commits(
    store: Store, tiny: Scenario, clock: Clock, recorder: Recorder
) -> None:
    # batches of one: the solver process solves each while the loop commits the one before
    lp = SchedulingLoop(
        store,
        tiny,
        observers=[recorder],
        config=LoopConfig(batch_window_s=0.0, max_batch_workloads=1),
        clock=clock,
    )
    queued = store.submit("", "", [cpu(4) for _ in range(6)], clock.now).workloads
    lp.start()
    try:
        until(lambda: len(recorder.cycles) >= 6)
    finally:
        lp.stop()
    states = [store.get(w.id) for w in queued]
    assert sorted(w.state for w in states) == [S.PENDING] + [S.PLACED] * 5
    (left,) = [w for w in states if w.state == S.PENDING]
    assert left.reason and "rejected" not in left.reason  # solved as not fitting, not refused
    nodes = [w.placements[0].node for w in states if w.state == S.PLACED]
    assert len(set(nodes)) == 5  # tiny's five CPU nodes, one 4-core workload each


@pytest.mark.parametrize("fgd", [True, False])
def test_gpu_work_is_solved_against_the_gpu_requests_submitted_lately(
    store: Store, tiny: Scenario, clock: Clock, fgd: bool
) -> None:
    from scheduler.solver.fragmentation import RequestType

    share = Resources(1000, 1024, gpu_millis=500)
    lp = SchedulingLoop(store, tiny, config=LoopConfig(solver_process=False, fgd=fgd), clock=clock)
    sub = store.submit(
        "", "", [WorkloadSpec(tenant="t", resources=share, replicas=2), cpu(1)], clock()
    )
    for w in sub.workloads:
        lp._enqueue(w)
    problem, _ = lp._problem(list(sub.workloads), Cluster(tiny), clock())
    assert problem.gpu_target == ((RequestType(share, 1.0),) if fgd else ())
