"""Valley's optimizer (work in progress: greedy fallback only for now)."""

from __future__ import annotations

from dataclasses import replace

from scheduler.solver.problem import PlacementResult, Problem, SolverParams


def solve_valley(problem: Problem, params: SolverParams, *, seed: int = 0, deadline: float | None = None) -> PlacementResult:
    from scheduler.solver.heuristics import solve_heuristic

    res = solve_heuristic(problem, replace(params, policy="cheapest-first"))
    return replace(res, policy="valley")
