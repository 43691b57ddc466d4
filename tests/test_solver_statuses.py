"""What the solvers inside a solve said is kept: typed statistics, a log line and a metric for
every status but OPTIMAL and FEASIBLE (MODEL_INVALID included), never dropped."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from scheduler.domain import Cluster, Resources, WorkloadSpec
from scheduler.loop import CycleReport
from scheduler.metrics import REGISTRY, MetricsObserver
from scheduler.solver import PendingWorkload, Problem, SolverParams, SolveStatus, solve


def one_job(tiny) -> Problem:
    spec = WorkloadSpec(tenant="t", resources=Resources(1000, 1024))
    return Problem(tiny, Cluster(tiny), (PendingWorkload("w", spec),))


def runs(backend: str, status: str) -> float:
    value = REGISTRY.get_sample_value(
        "valley_solver_backend_runs_total", {"backend": backend, "status": status}
    )
    return value or 0.0


def test_every_solver_that_ran_reports_its_status(tiny):
    r = solve(one_job(tiny))
    assert r.stats.lp_status == "OPTIMAL"
    assert r.stats.cpsat_status in ("OPTIMAL", "FEASIBLE")
    assert r.stats.mip_status == "OPTIMAL"
    assert r.stats.bound_source in ("lp", "mip", "cpsat")
    assert dict(r.stats.backend_statuses()) == {
        "lp": "OPTIMAL",
        "mip": "OPTIMAL",
        "cpsat": r.stats.cpsat_status,
    }


def test_an_invalid_cpsat_model_is_logged_kept_in_the_stats_and_the_packed_answer_stays(
    tiny, caplog
):
    with caplog.at_level(logging.WARNING):
        r = solve(one_job(tiny), SolverParams(solver_parameters="linearization_level: -5"))
    assert r.stats.cpsat_status == "MODEL_INVALID"
    assert r.status is SolveStatus.FEASIBLE and "w" in r.placements
    assert any("MODEL_INVALID" in rec.getMessage() for rec in caplog.records)


def test_the_metrics_count_each_backend_status_of_a_cycle(tiny):
    r = solve(one_job(tiny), SolverParams(solver_parameters="linearization_level: -5"))
    before = runs("cpsat", "MODEL_INVALID"), runs("lp", "OPTIMAL")
    report = CycleReport(datetime.now(UTC), 0.01, 0.01, 1, 1, r, (), (), ())
    MetricsObserver().on_cycle(report)
    assert runs("cpsat", "MODEL_INVALID") == before[0] + 1
    assert runs("lp", "OPTIMAL") == before[1] + 1
