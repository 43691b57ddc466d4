"""Preemption in the loop, cycle by cycle (``run_cycle`` with a clock the test moves) over a
real SQLite store and the real solver, on the tiny scenario: near holds two 4-core nodes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scheduler.domain import Resources, Scenario, Topology, Workload, WorkloadKind, WorkloadSpec
from scheduler.loop import LoopConfig, SchedulingLoop
from scheduler.loop.preempting import WINDOW_S
from scheduler.metrics import REGISTRY, MetricsObserver
from scheduler.solver import SolverParams
from scheduler.store import Store
from tests.test_loop_support import Recorder, S, store_fixture  # noqa: F401

NEAR = ("near",)
T0 = datetime(2025, 7, 1, 4, 0, tzinfo=UTC)


class SimClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def job(cores: int, priority: int = 0, **kw: Any) -> WorkloadSpec:
    return WorkloadSpec(
        tenant="t",
        resources=Resources(cores * 1000, 1024),
        kind=kw.pop("kind", WorkloadKind.BATCH),
        priority=priority,
        allowed_sites=kw.pop("allowed_sites", NEAR),
        **kw,
    )


class Driver:
    """A loop whose cycles the test runs, on ``store``."""

    def __init__(self, store: Store, scenario: Scenario, **config: Any) -> None:
        self.store = store
        self.clock = SimClock()
        self.recorder = Recorder()
        self.loop = self.start(scenario, **config)

    def start(self, scenario: Scenario, **config: Any) -> SchedulingLoop:
        lp = SchedulingLoop(
            self.store,
            scenario,
            params=SolverParams(num_workers=1),
            observers=[self.recorder, MetricsObserver()],
            config=LoopConfig(solver_process=False, solve_budget_s=1.0, **config),
            clock=self.clock,
        )
        lp.load()
        return lp

    def submit(self, *specs: WorkloadSpec) -> list[Workload]:
        sub = self.store.submit("", "", specs, self.clock.now)
        self.loop.submitted(sub.workloads)
        return list(sub.workloads)

    def cancel(self, w: Workload) -> None:
        change = self.store.cancel(w.id, self.clock.now)
        self.loop.state_changed(change.workload, change.previous_state)

    def cycle(self, n: int = 1) -> None:
        for _ in range(n):
            self.clock.now += timedelta(seconds=1)
            self.loop.run_cycle()

    def state(self, w: Workload) -> S:
        return self.store.get(w.id).state

    def preempted(self) -> list[str]:
        return [wid for wid, _, new in self.recorder.changes if new == S.PREEMPTED]


@pytest.fixture
def drive(store: Store, tiny: Scenario) -> Iterator[Driver]:
    yield Driver(store, tiny)


def fill_near(d: Driver, priority: int = 0) -> list[Workload]:
    """near's two nodes full: two 2-core jobs each."""
    ws = d.submit(*(job(2, priority, name=f"batch{i}") for i in range(4)))
    d.cycle()
    assert all(d.state(w) == S.PLACED for w in ws)
    return ws


def preemptions_counted(priority: str, victim_priority: str) -> float:
    labels = {"site": "near", "priority": priority, "victim_priority": victim_priority}
    return REGISTRY.get_sample_value("valley_preemptions_total", labels) or 0.0


def test_higher_priority_work_is_placed_in_one_cycle_and_its_victim_placed_again_later(
    drive: Driver,
) -> None:
    counted = preemptions_counted("2", "0")
    batch = fill_near(drive)
    (hi,) = drive.submit(job(2, 2, name="latency", kind=WorkloadKind.SERVICE))
    drive.cycle()  # tried, does not fit, displaces one batch job: placed this very cycle
    assert drive.state(hi) == S.PLACED
    (victim_id,) = drive.preempted()
    victim = drive.store.get(victim_id)
    assert victim.state == S.PENDING and not victim.placements
    assert f"preempted by {hi.id} (priority 2)" in victim.reason
    assert (victim_id, S.PREEMPTED, S.PENDING) in drive.recorder.changes
    assert preemptions_counted("2", "0") == counted + 1
    snap = drive.loop.snapshot()
    assert snap.counts_by_state[S.PLACED] == 4 and snap.counts_by_state[S.PENDING] == 1
    assert int((snap.cluster.cap_cpu - snap.cluster.free_cpu).sum()) == 8000  # near full
    drive.cycle(2)
    assert drive.state(victim) == S.PENDING  # no room: it waits
    drive.cancel(hi)
    drive.cycle()
    assert drive.state(victim) == S.PLACED  # room again: placed by the ordinary solver
    assert all(drive.state(w) == S.PLACED for w in batch)  # nothing lost


def test_equal_priority_never_preempts(drive: Driver) -> None:
    fill_near(drive, priority=1)
    (same,) = drive.submit(job(2, 1))
    drive.cycle(2)
    assert drive.state(same) == S.PENDING and not drive.preempted()


def test_preemption_off_leaves_higher_priority_work_waiting(store: Store, tiny: Scenario) -> None:
    d = Driver(store, tiny, preemption=False)
    fill_near(d)
    (hi,) = d.submit(job(2, 5))
    d.cycle(2)
    assert d.state(hi) == S.PENDING and not d.preempted()


def test_a_gang_victim_leaves_whole(drive: Driver) -> None:
    (gang,) = drive.submit(job(3, 0, replicas=2, topology=Topology.GANG))
    drive.cycle()
    (hi,) = drive.submit(job(4, 1))
    drive.cycle()
    assert drive.state(hi) == S.PLACED and drive.preempted() == [gang.id]
    assert not drive.store.get(gang.id).placements
    cluster = drive.loop.snapshot().cluster
    assert int((cluster.cap_cpu - cluster.free_cpu).sum()) == 4000  # the gang's 6 cores freed


def protected_setup(d: Driver) -> tuple[Workload, Workload]:
    """near/one node holds a priority-9 job, the other ``victim`` (priority 0); ``victim`` is
    preempted twice (each preemptor cancelled after), and placed again each time."""
    keeper, victim = d.submit(job(4, 9, name="keeper"), job(4, 0, name="victim"))
    d.cycle()
    for i in range(2):
        (p,) = d.submit(job(4, 1, name=f"p{i}"))
        d.cycle()
        assert d.state(p) == S.PLACED and d.preempted() == [victim.id] * (i + 1)
        d.cancel(p)
        d.cycle()
        assert d.state(victim) == S.PLACED
    return keeper, victim


def test_a_workload_preempted_twice_within_an_hour_is_not_preempted_again(
    drive: Driver,
) -> None:
    _, victim = protected_setup(drive)
    (third,) = drive.submit(job(4, 1, name="p2"))
    drive.cycle(2)
    assert drive.state(third) == S.PENDING and drive.state(victim) == S.PLACED
    # once the first of the two preemptions is an hour old, the waiting work tries again
    drive.clock.now = T0 + timedelta(seconds=WINDOW_S + 30)
    drive.cycle()
    assert drive.state(third) == S.PLACED and drive.preempted() == [victim.id] * 3


def test_the_preemption_history_survives_a_restart(store: Store, tiny: Scenario) -> None:
    d = Driver(store, tiny)
    _, victim = protected_setup(d)
    d.loop = d.start(tiny)  # a new loop on the same store (a restart)
    (third,) = d.submit(job(4, 1, name="p2"))
    d.cycle(2)
    assert d.state(third) == S.PENDING and d.state(victim) == S.PLACED


def test_a_recently_preempted_workload_does_not_preempt_in_turn(drive: Driver) -> None:
    # green full of priority-0 work, then a priority-1 job on each node of near (green has no
    # room left for them)
    low = drive.submit(*(job(4, 0, name=f"low{i}", allowed_sites=("green",)) for i in range(3)))
    drive.cycle()
    mid = drive.submit(*(job(4, 1, name=f"mid{i}", allowed_sites=()) for i in range(2)))
    drive.cycle()
    assert all(p.site == "near" for w in mid for p in drive.store.get(w.id).placements)
    (hi,) = drive.submit(job(4, 2))
    drive.cycle()
    (victim_id,) = drive.preempted()
    assert victim_id in {w.id for w in mid}
    # the displaced priority-1 job could displace a priority-0 one on green, but it was just
    # preempted itself: it waits for room instead (no cascade)
    drive.cycle(2)
    assert drive.state(hi) == S.PLACED and drive.preempted() == [victim_id]
    assert all(drive.state(w) == S.PLACED for w in low)
    assert drive.store.get(victim_id).state == S.PENDING
