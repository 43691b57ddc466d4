"""Floors: lower bounds no placement of a problem's work can beat, from Valley's own proven
bound with the objective cut down to the terms a floor is about.

The objective of a floor keeps the energy cost and the priced carbon of the work (latency,
headroom and rack-spread weights 0) and the penalties for leaving work out, so its bound holds
for every placement that places all the work Valley's model can place - where the work runs
now, and wherever a rebalance could move it."""

from __future__ import annotations

from dataclasses import replace

from scheduler.solver import solve
from scheduler.solver.problem import Problem, SolverParams


def floor_params(params: SolverParams, time_limit_s: float) -> SolverParams:
    """``params`` with the objective cut to energy and priced carbon (module docstring)."""
    return replace(
        params,
        policy="valley",
        time_limit_s=time_limit_s,
        latency_cny_per_ms_hour=0.0,
        headroom_cny_per_core_hour=0.0,
        rack_spread_cny_per_replica_hour=0.0,
        time_shifting=False,
    )


def objective_floor(
    problem: Problem, params: SolverParams, time_limit_s: float, seed: int = 0
) -> float | None:
    """CNY per hour (energy plus carbon at ``params``' carbon price) that no placement of all of
    ``problem``'s work on its cluster can beat; None where no bound was proven in the time."""
    return solve(problem, floor_params(params, time_limit_s), seed=seed).bound
