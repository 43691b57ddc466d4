"""The solver layer. ``solve()`` is the single entry point for every policy."""

from __future__ import annotations

from scheduler.solver.problem import (
    POLICIES,
    REPAIRS,
    Breakdown,
    PendingWorkload,
    PlacementResult,
    Problem,
    SolverParams,
    SolveStats,
    SolveStatus,
    Unplaced,
    without_room_on,
)


def solve(
    problem: Problem,
    params: SolverParams | None = None,
    *,
    seed: int = 0,
    deadline: float | None = None,
) -> PlacementResult:
    """Place the problem's pending workloads with ``params.policy``.

    ``deadline`` is an absolute ``time.monotonic()`` instant; the solver stops by then (or after
    ``params.time_limit_s``, whichever comes first) and returns the best answer it has.
    ``problem.cluster`` is not changed. The same seed gives the same placement.
    """
    params = params or SolverParams()
    if params.policy == "valley":
        from scheduler.solver.valley import solve_valley

        return solve_valley(problem, params, seed=seed, deadline=deadline)
    from scheduler.solver.heuristics import solve_heuristic

    return solve_heuristic(problem, params)


__all__ = [
    "POLICIES",
    "REPAIRS",
    "Breakdown",
    "PendingWorkload",
    "PlacementResult",
    "Problem",
    "SolveStats",
    "SolveStatus",
    "SolverParams",
    "Unplaced",
    "solve",
    "without_room_on",
]
