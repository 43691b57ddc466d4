"""Work placed now is priced over its run (``scheduler.solver.runs``, the objective's module
docstring): on a two-site scenario where the ``dear`` site is the cheaper one for the hour
the work arrives in and the dearer one for the rest of the day."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from scheduler.domain import (
    Cluster,
    ReplicaPlacement,
    Resources,
    Scenario,
    Workload,
    WorkloadKind,
    WorkloadSpec,
    WorkloadState,
    dynamic_watts,
    parse_scenario,
)
from scheduler.domain.forecast import Forecast, hour_of
from scheduler.domain.timeline import Timeline
from scheduler.loop.draining import plan_drain
from scheduler.solver import PendingWorkload, Problem, SolverParams, solve
from scheduler.solver.objective import evaluate
from scheduler.solver.runs import run_seconds

NOW = datetime(2025, 7, 1, 12, 10, tzinfo=UTC)  # 20:10 local
ARRIVAL_HOUR = 20  # local: the only hour the dear site is cheap
DEAR = [0.1 if h == ARRIVAL_HOUR else 1.0 for h in range(24)]


def site(name: str, prices: list[float]) -> str:
    """A site of one pool of two 4-core nodes, PUE 1, carbon flat: only prices differ."""
    return f"""
[sites.{name}]
pue = 1.0
price_cny_per_kwh = {prices}
carbon_kg_per_kwh = {[0.5] * 24}
latency_ms = {{ city = 1.0 }}
[[sites.{name}.pools]]
name = "cpu"
count = 2
cpu_millis = 4000
memory_mib = 8192
idle_watts = 1.0
max_watts = 301.0
"""


TWO_SITES = (
    """
name = "two"
origins = ["city"]
timezone = "Asia/Shanghai"
"""
    + site("dear", DEAR)
    + site("flat", [0.5] * 24)
)
PARAMS = SolverParams(num_workers=1, time_limit_s=2.0)


@pytest.fixture(scope="module")
def two() -> Scenario:
    return parse_scenario(TWO_SITES, "two.toml")


def spec(kind: WorkloadKind, hours: float) -> WorkloadSpec:
    return WorkloadSpec(
        tenant="t",
        resources=Resources(2000, 1024),
        kind=kind,
        duration_s=int(hours * 3600),
        origin="city",
    )


def problem(scenario: Scenario, *specs: WorkloadSpec, clock: bool = True) -> Problem:
    cluster = Cluster(scenario)
    return Problem(
        scenario,
        cluster,
        tuple(PendingWorkload(f"w{i}", s) for i, s in enumerate(specs)),
        hour=ARRIVAL_HOUR,
        month=7,
        now=NOW if clock else None,
        forecast=Forecast.of(scenario) if clock else None,
        timeline=Timeline(cluster, hour_of(NOW)) if clock else None,
    )


def site_of(scenario: Scenario, s: WorkloadSpec, clock: bool = True) -> str:
    result = solve(problem(scenario, s, clock=clock), PARAMS)
    (rp,) = result.placements["w0"]
    return rp.site


def test_a_long_job_goes_to_the_site_cheaper_over_its_run_not_over_the_hour_it_arrives(
    two: Scenario,
) -> None:
    assert site_of(two, spec(WorkloadKind.BATCH, 10)) == "flat"


def test_a_service_goes_to_the_site_cheaper_over_a_day(two: Scenario) -> None:
    assert site_of(two, spec(WorkloadKind.SERVICE, 0)) == "flat"


def test_a_job_ending_within_the_hour_takes_the_hours_cheaper_site(two: Scenario) -> None:
    assert site_of(two, spec(WorkloadKind.BATCH, 0.5)) == "dear"


def test_without_a_clock_work_is_priced_at_the_hour_it_is_placed_in(two: Scenario) -> None:
    assert site_of(two, spec(WorkloadKind.BATCH, 10), clock=False) == "dear"


def test_the_objective_counts_dynamic_power_at_the_runs_mean_rates(two: Scenario) -> None:
    job = spec(WorkloadKind.BATCH, 10)
    p = problem(two, job)
    placed = {"w0": (ReplicaPlacement(0, "dear", "dear/cpu-0000"),)}
    b = evaluate(p, placed, PARAMS)
    dyn = dynamic_watts(p.cluster.pools[0], job.resources)
    # 50 minutes left of the cheap hour, then 9 h 10 min at 1.0 CNY/kWh
    mean_price = (50 / 60 * 0.1 + (10 - 50 / 60) * 1.0) / 10
    idle_now = 1.0 * 0.1  # the node's idle power, at the hour's price
    assert b.energy_cny_per_hour == pytest.approx((idle_now + dyn * mean_price) / 1000.0)
    assert b.carbon_kg_per_hour == pytest.approx((1.0 + dyn) * 0.5 / 1000.0)
    # the same placement without a clock: the hour's price for all of it
    hourly = evaluate(problem(two, job, clock=False), placed, PARAMS)
    assert hourly.energy_cny_per_hour == pytest.approx((1.0 + dyn) * 0.1 / 1000.0)


def test_the_bound_stays_below_the_objective_priced_over_runs(two: Scenario) -> None:
    specs = [spec(WorkloadKind.BATCH, h) for h in (0.5, 3, 10)] + [spec(WorkloadKind.SERVICE, 0)]
    result = solve(problem(two, *specs), PARAMS)
    assert len(result.placements) == len(specs)
    assert result.bound is not None
    assert result.bound <= result.objective + 1e-9


def test_a_placed_workloads_cost_per_hour_is_over_its_run(two: Scenario) -> None:
    job = replace(spec(WorkloadKind.BATCH, 10), allowed_sites=("dear",))
    p = problem(two, job)
    result = solve(p, PARAMS)
    (rp,) = result.placements["w0"]
    attributed = dynamic_watts(p.cluster.pools[0], job.resources) + 1.0 * 2000 / 4000
    mean_price = (50 / 60 * 0.1 + (10 - 50 / 60) * 1.0) / 10
    cost = result.costs["w0"]
    assert rp.site == "dear"
    assert cost.energy_cny_per_hour == pytest.approx(attributed * mean_price / 1000.0)
    assert cost.carbon_kg_per_hour == pytest.approx(attributed * 0.5 / 1000.0)


@pytest.mark.parametrize(("clock", "to_site"), [(True, "flat"), (False, "dear")])
def test_a_drained_job_moves_to_the_site_cheaper_over_the_rest_of_its_run(
    two: Scenario, clock: bool, to_site: str
) -> None:
    job = spec(WorkloadKind.BATCH, 10)
    p = problem(two, clock=clock)
    p.cluster.allocate(p.cluster.index["dear/cpu-0000"], job.resources)
    rep = ReplicaPlacement(0, "dear", "dear/cpu-0000", start_time=NOW)
    w = Workload("j", job, WorkloadState.PLACED, (rep,), placed_at=NOW)
    plan = plan_drain(p, PARAMS, [w], ["dear/cpu-0000"])
    ((moved,), _) = plan.placements["j"]
    assert moved.site == to_site


def test_a_run_of_years_is_priced_as_its_first_week(two: Scenario) -> None:
    ten_years = spec(WorkloadKind.BATCH, 10 * 366 * 24)
    assert run_seconds(ten_years) == 7 * 24 * 3600
    assert site_of(two, ten_years) == "flat"
