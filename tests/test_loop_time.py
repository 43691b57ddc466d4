"""The loop in simulated time: a clock the test moves and ``run_cycle`` called directly, over a
real SQLite store and the real solver, on the one-node scenario of ``test_time`` (energy cheap
from 00:00 to 06:00 local time)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from scheduler.domain import Resources, Scenario, Workload, WorkloadKind, WorkloadSpec
from scheduler.domain.forecast import Forecast, hour_of, parse_forecast
from scheduler.loop import LoopConfig, SchedulingLoop
from scheduler.solver import SolverParams
from scheduler.store import Store
from tests.test_loop_support import S, store_fixture  # noqa: F401
from tests.test_time import MIDNIGHT, NOW, clock_scenario


class SimClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def sim() -> SimClock:
    return SimClock(NOW)


@pytest.fixture
def scenario() -> Scenario:
    return clock_scenario(1)


@pytest.fixture
def loop(store: Store, scenario: Scenario, sim: SimClock) -> Iterator[SchedulingLoop]:
    lp = SchedulingLoop(
        store,
        scenario,
        params=SolverParams(num_workers=1),
        config=LoopConfig(solver_process=False, solve_budget_s=1.0),
        clock=sim,
    )
    lp.load()
    yield lp


def submit(
    store: Store, loop: SchedulingLoop, sim: SimClock, *specs: WorkloadSpec
) -> list[Workload]:
    sub = store.submit("", "", specs, sim.now)
    loop.submitted(sub.workloads)
    return list(sub.workloads)


def job(cores: int, hours: float, deadline_in_h: float) -> WorkloadSpec:
    return WorkloadSpec(
        tenant="t",
        resources=Resources(cores * 1000, 1024),
        kind=WorkloadKind.BATCH,
        duration_s=int(hours * 3600),
        deadline=NOW + timedelta(hours=deadline_in_h),
    )


def start(store: Store, w: Workload) -> datetime | None:
    return store.get(w.id).placements[0].start_time


def test_a_reservation_holds_capacity_only_from_its_start_and_completes_after_it(
    store: Store, loop: SchedulingLoop, sim: SimClock
) -> None:
    (w,) = submit(store, loop, sim, job(4, 1, deadline_in_h=10))
    loop.run_cycle()
    assert store.get(w.id).state == S.PLACED
    assert start(store, w) == MIDNIGHT
    snap = loop.snapshot()
    assert (snap.cluster.free_cpu == 4000).all()  # nothing held now
    assert snap.reserved_cores is not None and snap.reserved_from is not None
    ahead = hour_of(MIDNIGHT) - hour_of(snap.reserved_from)
    assert snap.reserved_cores[0, ahead] == 4.0
    assert loop.next_event() == MIDNIGHT
    sim.now = MIDNIGHT + timedelta(minutes=1)
    loop.run_cycle()
    assert (loop.snapshot().cluster.free_cpu == 0).all()  # started: held now
    assert loop.next_event() == MIDNIGHT + timedelta(hours=1)
    sim.now = MIDNIGHT + timedelta(hours=1)
    loop.run_cycle()
    assert loop.next_event() is None
    assert store.get(w.id).state == S.COMPLETED
    assert (loop.snapshot().cluster.free_cpu == 4000).all()


def test_reserved_core_hours_are_exported_per_site_and_hour_ahead(
    store: Store, loop: SchedulingLoop, sim: SimClock
) -> None:
    from scheduler.metrics import snapshot_families

    submit(store, loop, sim, job(4, 1, deadline_in_h=10))
    loop.run_cycle()
    (family,) = [f for f in snapshot_families(loop.snapshot()) if f.name == "valley_reserved_cores"]
    values = {s.labels["hours_ahead"]: s.value for s in family.samples}
    ahead = hour_of(MIDNIGHT) - hour_of(NOW)
    assert values[str(ahead)] == 4.0
    assert sum(values.values()) == 4.0
    assert len(values) == 24


def test_a_service_waits_rather_than_take_capacity_a_reservation_needs(
    store: Store, loop: SchedulingLoop, sim: SimClock
) -> None:
    (batch,) = submit(store, loop, sim, job(4, 1, deadline_in_h=10))
    loop.run_cycle()
    service = WorkloadSpec(tenant="t", resources=Resources(2000, 1024), kind=WorkloadKind.SERVICE)
    (svc,) = submit(store, loop, sim, service)
    loop.run_cycle()
    assert store.get(svc.id).state == S.PENDING
    assert start(store, batch) == MIDNIGHT


def test_a_reservation_is_planned_again_when_a_cheaper_hour_appears(
    store: Store, loop: SchedulingLoop, sim: SimClock, scenario: Scenario
) -> None:
    (w,) = submit(store, loop, sim, job(2, 1, deadline_in_h=10))
    loop.run_cycle()
    assert start(store, w) == MIDNIGHT
    three = MIDNIGHT + timedelta(hours=3)
    forecast = parse_forecast(
        {"start": three.isoformat(), "sites": {"only": {"price_cny_per_kwh": [0.05]}}}, scenario
    )
    loop.set_forecast(forecast)
    loop.run_cycle()
    assert start(store, w) == three
    assert store.get(w.id).cost.energy_cny_per_hour < 0.2 * 0.15


def test_a_reservation_keeps_its_plan_when_nothing_cheaper_appears(
    store: Store, loop: SchedulingLoop, sim: SimClock, scenario: Scenario
) -> None:
    (w,) = submit(store, loop, sim, job(2, 1, deadline_in_h=10))
    loop.run_cycle()
    loop.set_forecast(Forecast.of(scenario))
    loop.run_cycle()
    assert start(store, w) == MIDNIGHT


def test_a_restarted_loop_keeps_reservations_as_reservations(
    store: Store, loop: SchedulingLoop, sim: SimClock, scenario: Scenario
) -> None:
    (w,) = submit(store, loop, sim, job(4, 1, deadline_in_h=10))
    loop.run_cycle()
    again = SchedulingLoop(store, scenario, config=LoopConfig(solver_process=False), clock=sim)
    again.load()
    snap = again.snapshot()
    assert (snap.cluster.free_cpu == 4000).all()
    assert snap.reserved_cores is not None and snap.reserved_cores.sum() == 4.0
    sim.now = MIDNIGHT + timedelta(hours=1, minutes=1)
    again.run_cycle()
    assert store.get(w.id).state == S.COMPLETED


def test_time_shifting_off_starts_everything_now_in_the_loop(
    store: Store, scenario: Scenario, sim: SimClock
) -> None:
    lp = SchedulingLoop(
        store,
        scenario,
        params=SolverParams(num_workers=1, time_shifting=False),
        config=LoopConfig(solver_process=False),
        clock=sim,
    )
    lp.load()
    (w,) = submit(store, lp, sim, job(2, 1, deadline_in_h=10))
    lp.run_cycle()
    assert start(store, w) == NOW
    sim.now = NOW + timedelta(hours=1)
    lp.run_cycle()
    assert store.get(w.id).state == S.COMPLETED
