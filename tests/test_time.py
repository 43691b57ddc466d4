"""Time: the timeline's capacity per hour, forecasts, and the solver's time decision for
deferrable work (API.md "Time: deferrable work"), on a one-site scenario checkable by hand:
one 4-core node, energy cheap from 00:00 to 06:00 local time and dear otherwise."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.domain import (
    Cluster,
    Resources,
    Scenario,
    ValidationError,
    WorkloadKind,
    WorkloadSpec,
    parse_scenario,
)
from scheduler.domain.forecast import Forecast, hour_of, load_forecast
from scheduler.domain.timeline import Timeline, hours_covering
from scheduler.solver import PendingWorkload, PlacementResult, Problem, SolverParams, solve

CHEAP_HOURS = range(0, 6)  # local
PRICES = [0.2 if h in CHEAP_HOURS else 1.0 for h in range(24)]
CLOCK = f"""
name = "clock"
origins = ["city"]
timezone = "Asia/Shanghai"

[sites.only]
pue = 1.0
price_cny_per_kwh = {PRICES}
carbon_kg_per_kwh = {[0.5] * 24}
latency_ms = {{ city = 1.0 }}
[[sites.only.pools]]
name = "cpu"
count = {{count}}
cpu_millis = 4000
memory_mib = 8192
idle_watts = 100.0
max_watts = 300.0
"""
# 20:10 local time: the cheap hours begin in 1 h 50 min
NOW = datetime(2025, 7, 1, 12, 10, tzinfo=UTC)
MIDNIGHT = datetime(2025, 7, 1, 16, 0, tzinfo=UTC)  # 00:00 local


def clock_scenario(nodes: int = 1) -> Scenario:
    return parse_scenario(CLOCK.replace("{count}", str(nodes)), "clock.toml")


@pytest.fixture(scope="module")
def clock() -> Scenario:
    return clock_scenario()


def job(cores: int, hours: float, deadline_in_h: float | None, **kw: object) -> WorkloadSpec:
    return WorkloadSpec(
        tenant="t",
        resources=Resources(cores * 1000, 1024),
        kind=WorkloadKind.BATCH,
        duration_s=int(hours * 3600),
        deadline=None if deadline_in_h is None else NOW + timedelta(hours=deadline_in_h),
        **kw,  # type: ignore[arg-type]
    )


def problem(scenario: Scenario, *specs: WorkloadSpec, timeline: Timeline | None = None) -> Problem:
    cluster = Cluster(scenario)
    return Problem(
        scenario,
        cluster,
        tuple(PendingWorkload(f"w{i}", s) for i, s in enumerate(specs)),
        hour=20,
        month=7,
        now=NOW,
        forecast=Forecast.of(scenario),
        timeline=timeline or Timeline(cluster, hour_of(NOW)),
    )


def start_of(result: PlacementResult, wid: str) -> datetime | None:
    return result.placements[wid][0].start_time


PARAMS = SolverParams(num_workers=1, time_limit_s=2.0)


# ----------------------------------------------------------------------------- timeline


def test_free_capacity_during_hours_counts_only_what_is_held_then(clock: Scenario) -> None:
    tl = Timeline(Cluster(clock), 100, horizon=6)
    tl.hold("later", [0], 3000, 100, 102, 104, reserved=True)
    assert tl.free(100, 102)[0][0] == 4000
    assert tl.free(101, 103)[0][0] == 1000
    assert tl.free(104, 106)[0][0] == 4000
    tl.hold("service", [0], 500, 100, 100, None)
    assert tl.free(104, 106)[0][0] == 3500
    assert tl.reserved_cores()[0].tolist() == [0, 0, 3, 3, 0, 0]


def test_a_timeline_advanced_drops_the_hours_past_and_keeps_long_holds(clock: Scenario) -> None:
    tl = Timeline(Cluster(clock), 100, horizon=4)
    tl.hold("long", [0], 1000, 100, 100, 110)
    tl.advance(103)
    assert tl.cpu[0].tolist() == [1000, 1000, 1000, 1000]
    tl.advance(108)
    assert tl.cpu[0].tolist() == [1000, 1000, 0, 0]
    tl.release("long")
    assert not tl.cpu.any()


def test_deferrable_work_is_never_reserved_on_a_cordoned_node() -> None:
    three = clock_scenario(3)
    cluster = Cluster(three)
    cordoned = [0, 1]
    blocked = cluster.without_room_on([cluster.node_names[i] for i in cordoned])
    tl = Timeline(cluster, hour_of(NOW)).without_room_on(cordoned)
    p = problem(three, job(1, 2, 20), job(1, 2, 20))
    result = solve(Problem(**{**p.__dict__, "cluster": blocked, "timeline": tl}), PARAMS)
    assert result.stats.deferred_workloads == 2  # reserved for the cheap hours
    for reps in result.placements.values():
        assert [r.node for r in reps] == [cluster.node_names[2]]


def test_deferrable_work_with_a_per_node_limit_starts_now_and_keeps_it() -> None:
    three = clock_scenario(3)
    spread = job(1, 2, 20, replicas=3, max_replicas_per_node=1)
    result = solve(problem(three, spread), PARAMS)
    reps = result.placements["w0"]
    assert len({r.node for r in reps}) == 3
    assert all(r.start_time in (None, NOW) for r in reps)


def test_a_run_covers_the_whole_hours_it_touches() -> None:
    assert hours_covering(3600 * 10 + 1800, 3600) == (10, 12)
    assert hours_covering(3600 * 10, 3600) == (10, 11)
    assert hours_covering(3600 * 10, 0) == (10, None)


# ----------------------------------------------------------------------------- forecasts


def test_a_forecast_file_replaces_the_scenarios_hours(clock: Scenario, tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    start = MIDNIGHT + timedelta(hours=2)
    path.write_text(
        json.dumps({"start": start.isoformat(), "sites": {"only": {"price_cny_per_kwh": [0.05]}}})
    )
    f = load_forecast(path, clock)
    price, carbon = f.hourly("only", hour_of(start) - 1, 3)
    assert price.tolist() == [0.2, 0.05, 0.2]  # outside its hours, the scenario's
    assert carbon.tolist() == [0.5, 0.5, 0.5]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[sites.nowhere]\nprice_cny_per_kwh = [1.0]", "sites.nowhere"),
        ("[sites.only]\nprice_cny_per_kwh = [1.0]", "sites.only.price_cny_per_kwh"),
        ("[sites.only]\ncarbon_kg_per_kwh = [" + "0.1, " * 23 + "-1]", "carbon_kg_per_kwh[23]"),
        ("start = 2025-01-01T00:30:00+08:00", "start"),
        ("colour = 1", "colour"),
    ],
    ids=["unknown site", "24 values needed", "negative value", "not an hour", "unknown key"],
)
def test_a_bad_forecast_file_names_the_file_and_field(
    clock: Scenario, tmp_path: Path, text: str, field: str
) -> None:
    path = tmp_path / "f.toml"
    path.write_text(text)
    with pytest.raises(ValidationError) as e:
        load_forecast(path, clock)
    assert e.value.field.startswith(str(path))
    assert field in e.value.field


# ----------------------------------------------------------------------------- solver


def test_deferrable_work_starts_at_the_cheap_hour_when_its_slack_allows(clock: Scenario) -> None:
    result = solve(problem(clock, job(2, 1, deadline_in_h=10)), PARAMS)
    assert start_of(result, "w0") == MIDNIGHT
    assert result.stats.deferred_workloads == 1
    # charged at the cheap hour's rates: 2 of 4 cores of a 100-300 W node, PUE 1
    assert result.costs["w0"].energy_cny_per_hour == pytest.approx(0.2 * 0.150, rel=1e-6)


def test_deferrable_work_starts_now_when_its_deadline_leaves_no_cheaper_hour(
    clock: Scenario,
) -> None:
    result = solve(problem(clock, job(2, 1, deadline_in_h=2)), PARAMS)
    start = start_of(result, "w0")
    assert start is None or start + timedelta(hours=1) <= NOW + timedelta(hours=2)


def test_no_start_is_ever_past_the_deadline(clock: Scenario) -> None:
    specs = [job(1, h, deadline_in_h=d) for h in (0.5, 1, 3) for d in (3.1, 4.5, 6, 9.9)]
    result = solve(problem(clock_scenario(4), *specs), PARAMS)
    for i, s in enumerate(specs):
        reps = result.placements[f"w{i}"]
        start = reps[0].start_time or NOW
        assert s.deadline is not None
        assert start + timedelta(seconds=s.duration_s) <= s.deadline


def test_a_service_is_never_deferred(clock: Scenario) -> None:
    service = WorkloadSpec(
        tenant="t",
        resources=Resources(2000, 1024),
        kind=WorkloadKind.SERVICE,
        duration_s=3600,
        deadline=NOW + timedelta(hours=10),
    )
    result = solve(problem(clock, service), PARAMS)
    assert start_of(result, "w0") is None


def test_two_jobs_on_a_full_node_both_fit_at_disjoint_hours(clock: Scenario) -> None:
    result = solve(problem(clock, job(4, 1, 10), job(4, 1, 10)), PARAMS)
    assert len(result.placements) == 2
    starts = sorted(start_of(result, w) or NOW for w in ("w0", "w1"))
    assert starts[1] - starts[0] >= timedelta(hours=1)
    assert all(s >= MIDNIGHT for s in starts)


def test_work_placed_now_leaves_the_capacity_a_reservation_holds(clock: Scenario) -> None:
    cluster = Cluster(clock)
    tl = Timeline(cluster, hour_of(NOW))
    tl.hold("reserved", [0], 4000, 1024, hour_of(MIDNIGHT), hour_of(MIDNIGHT) + 1, True)
    service = WorkloadSpec(tenant="t", resources=Resources(1000, 1024), kind=WorkloadKind.SERVICE)
    short = job(1, 1, deadline_in_h=None)  # ends before midnight: fits
    # (solved apart: a batch's work placed now is kept out of the reserved capacity over the
    # longest run of the batch)
    assert not solve(problem(clock, service, timeline=tl), PARAMS).placements
    assert solve(problem(clock, short, timeline=tl), PARAMS).placements


def test_time_shifting_off_starts_everything_now(clock: Scenario) -> None:
    params = SolverParams(num_workers=1, time_shifting=False)
    result = solve(problem(clock, job(2, 1, 10), job(1, 2, 20)), params)
    assert len(result.placements) == 2
    assert all(reps[0].start_time is None for reps in result.placements.values())
    assert result.stats.deferred_workloads == 0


@pytest.mark.parametrize("policy", ["first-fit", "best-fit", "kube", "cheapest-first"])
def test_peer_policies_start_everything_now(clock: Scenario, policy: str) -> None:
    result = solve(problem(clock, job(2, 1, 10)), SolverParams(policy=policy))
    assert start_of(result, "w0") is None


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_the_bound_stays_below_the_objective_with_the_time_decision(
    clock: Scenario, data: st.DataObject
) -> None:
    scenario = clock_scenario(data.draw(st.integers(1, 3)))
    specs = []
    for _ in range(data.draw(st.integers(1, 7))):
        kind = data.draw(st.sampled_from([WorkloadKind.BATCH, WorkloadKind.SERVICE]))
        specs.append(
            WorkloadSpec(
                tenant="t",
                resources=Resources(data.draw(st.integers(250, 4000)), 1024),
                replicas=data.draw(st.integers(1, 3)),
                kind=kind,
                duration_s=data.draw(st.sampled_from([0, 1800, 3600, 3 * 3600])),
                deadline=data.draw(
                    st.sampled_from([None, NOW + timedelta(hours=4), NOW + timedelta(hours=14)])
                ),
                priority=data.draw(st.integers(0, 1)),
            )
        )
    specs = [
        s
        for s in specs
        if s.deadline is None or NOW + timedelta(seconds=s.duration_s) <= s.deadline
    ]
    p = problem(scenario, *specs)
    result = solve(p, PARAMS)
    # (no bound only when nothing can ever fit)
    assert result.bound is not None or not result.placements
    assert result.bound is None or result.bound <= result.objective + 1e-6
    # every hour ahead holds what runs in it: placed now and started later together
    tl = Timeline(p.cluster, hour_of(NOW))
    for wid, reps in result.placements.items():
        spec = next(w.spec for w in p.workloads if w.id == wid)
        start = reps[0].start_time or NOW
        first, end = hours_covering(start.timestamp(), spec.duration_s)
        nodes = [p.cluster.index[r.node] for r in reps]
        tl.hold(wid, nodes, spec.resources.cpu_millis, 1024, first, end)
        if spec.deadline is not None:
            assert start + timedelta(seconds=spec.duration_s) <= spec.deadline
    cpu, _ = tl.hourly_free()
    assert (cpu[:, 1:] >= 0).all()
