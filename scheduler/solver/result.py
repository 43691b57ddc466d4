"""Turning node-level decisions into a ``PlacementResult``: costs, objective and reasons."""

from __future__ import annotations

import time
from collections.abc import Mapping

from scheduler.domain import Cluster, ReplicaPlacement
from scheduler.solver import explain
from scheduler.solver.filters import Eligibility
from scheduler.solver.objective import (
    carbon_price,
    evaluate_state,
    rates_over_runs,
    site_rates,
    spec_rates,
    workload_cost,
)
from scheduler.solver.problem import (
    PlacementResult,
    Problem,
    SolverParams,
    SolveStats,
    SolveStatus,
)


def build_result(
    problem: Problem,
    params: SolverParams,
    placements: Mapping[str, tuple[ReplicaPlacement, ...]],
    eligibility: Mapping[str, Eligibility],
    after: Cluster,
    status: SolveStatus,
    started: float,
    bound: float | None = None,
    stats: SolveStats | None = None,
) -> PlacementResult:
    rates = site_rates(problem)
    specs = {w.id: w.spec for w in problem.workloads}
    # per hour of its run, as the objective counts it (``objective.run_priced``)
    runs = rates_over_runs(problem, carbon_price(problem, params), specs.values())
    costs = {
        wid: workload_cost(problem, specs[wid], reps, spec_rates(problem, specs[wid], rates, runs))
        for wid, reps in placements.items()
    }
    # sites where work of higher priority than some unplaced workload was placed this cycle
    placed_by_priority: dict[int, set[str]] = {}
    for wid, reps in placements.items():
        placed_by_priority.setdefault(specs[wid].priority, set()).update(p.site for p in reps)
    unplaced = {}
    for w in problem.workloads:
        if w.id in placements:
            continue
        higher = {
            s for prio, sites in placed_by_priority.items() if prio > w.spec.priority for s in sites
        }
        unplaced[w.id] = explain.unplaced(problem, w.id, w.spec, eligibility[w.id], after, higher)
    never_fits = {wid for wid, e in eligibility.items() if e.final_reason}
    breakdown = evaluate_state(problem, after, placements, params, never_fits)
    objective = breakdown.objective
    if bound is not None and objective < bound <= objective * (1 + 1e-9) + 1e-9:
        bound = objective  # rounding noise of the LP, not a wrong bound
    return PlacementResult(
        policy=params.policy,
        status=status if problem.workloads else SolveStatus.EMPTY,
        placements=dict(placements),
        unplaced=unplaced,
        costs=costs,
        objective=objective,
        bound=bound,
        solve_seconds=time.monotonic() - started,
        breakdown=breakdown,
        stats=stats or SolveStats(),
    )
