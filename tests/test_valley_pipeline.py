"""The pipeline's housekeeping: CP-SAT only in the time it is given, the relaxations loaded
from one proto as they were built term by term, the garbage collector as the solve found it."""

from __future__ import annotations

import gc
import time

from scheduler.domain import Cluster, Resources, WorkloadSpec
from scheduler.solver import PendingWorkload, Problem, SolverParams, solve
from scheduler.solver.valley.linear import LinearModel
from scheduler.solver.valley.pipeline import GC_PAUSE_REPLICAS
from scheduler.solver.valley.search import improve


def _two_jobs_model() -> LinearModel:
    # min x + 2y with x + y >= 3, x <= 2: x = 2, y = 1
    lm = LinearModel()
    x = lm.var("x", 0, 2, 1.0)
    y = lm.var("y", 0, 10, 2.0)
    lm.row([x, y], [1, 1], lo=3)
    return lm


def test_cpsat_is_not_started_when_its_time_is_already_up():
    lm = _two_jobs_model()
    late = improve(lm, [0, 3], SolverParams(), seed=0, until=time.monotonic() - 1.0, bound=None)
    assert late is None
    found = improve(lm, [0, 3], SolverParams(), seed=0, until=time.monotonic() + 5.0, bound=None)
    assert found is not None and found.counts == (2, 1) and found.value == 4.0


def test_the_relaxations_solve_the_model_as_built():
    lm = _two_jobs_model()
    lp = lm.solve_lp(5.0)
    assert lp.status == "OPTIMAL" and lp.bound == 4.0 and lp.x == (2.0, 1.0)
    lm.rows[0] = ([0, 1], [1, 1], 3.4, float("inf"))  # x + y >= 3.4: y = 1.4, or 2 if whole
    assert abs(lm.solve_lp(5.0).bound - 4.8) < 1e-6
    mip = lm.solve_mip(5.0, [1], 1e-9)
    assert mip.status == "OPTIMAL" and abs(mip.bound - 5.4) < 1e-6


def test_a_variable_named_twice_in_a_row_keeps_its_last_coefficient_when_solved():
    lm = LinearModel()
    a = lm.var("a", 0, 10, 1.0)
    lm.row([a, a], [1, 2], lo=3)  # 2a >= 3
    assert lm.solve_lp(5.0).x == (1.5,)


def _solve_a_large_job(tiny) -> None:
    """A solve large enough for the collector to be paused during it."""
    spec = WorkloadSpec(tenant="t", resources=Resources(10, 16), replicas=GC_PAUSE_REPLICAS)
    solve(Problem(tiny, Cluster(tiny), (PendingWorkload("w", spec),)))


def test_a_large_solve_leaves_the_garbage_collector_on_when_it_was_on(tiny):
    assert gc.isenabled()
    _solve_a_large_job(tiny)
    assert gc.isenabled()


def test_a_large_solve_leaves_the_garbage_collector_off_when_it_was_off(tiny):
    gc.disable()
    try:
        _solve_a_large_job(tiny)
        assert not gc.isenabled()
    finally:
        gc.enable()
