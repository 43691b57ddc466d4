"""CP-SAT on the aggregated model, hinted with the packed answer: the integer improvement."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ortools.sat.python import cp_model

from scheduler.solver.problem import SolverParams
from scheduler.solver.valley.linear import MONEY_SCALE, LinearModel

log = logging.getLogger(__name__)

# CP-SAT is not started with less time than this (seconds)
MIN_SECONDS = 0.005


@dataclass(frozen=True, slots=True)
class SearchOutcome:
    """CP-SAT's status name; where it found a solution, the counts, their value in the model
    and CP-SAT's proven bound made valid for the model (CNY/h)."""

    status: str
    seconds: float = 0.0
    counts: tuple[int, ...] = ()
    value: float | None = None
    bound: float | None = None


def cpsat_parameters(
    params: SolverParams,
    seed: int,
    seconds_left: float,
    bound: float | None,
    money_scale: float = MONEY_SCALE,
) -> cp_model.SatParameters:
    """CP-SAT's parameters: the raw ``params.solver_parameters`` first (parsing replaces the
    whole message), then ours wherever the raw text does not set the field."""
    sp = cp_model.CpSolver().parameters
    given = params.solver_parameters
    if given:
        sp.parse_text_format(given)

    def default(name: str, value: float | int | bool) -> None:
        if name not in given:
            setattr(sp, name, value)

    default("max_time_in_seconds", max(0.0, seconds_left))
    default("num_workers", params.num_workers)
    # interleaved workers make the search deterministic for a seed, whatever the timing
    default("interleave_search", True)
    default("random_seed", seed)
    # stop once proven within 0.05% of the objective (at least 0.01 CNY/h). CP-SAT's own
    # relative limit would be relative to its objective, which carries the large rewards for
    # placing work, so the limit is set in absolute money from the LP bound instead.
    default("relative_gap_limit", 0.0)
    default("absolute_gap_limit", max(0.01, 0.0005 * abs(bound or 0.0)) * money_scale)
    return sp


def improve(
    lm: LinearModel,
    hint: Sequence[int],
    params: SolverParams,
    *,
    seed: int,
    until: float,
    bound: float | None,
) -> SearchOutcome | None:
    """Search the integer model from ``hint`` until ``until`` (a ``time.monotonic()`` instant;
    building the model counts: 0.15 s at 50k replicas). None: too little time given."""
    solver = cp_model.CpSolver()
    sp = cpsat_parameters(params, seed, until - time.monotonic(), bound, lm.money_scale)
    if sp.max_time_in_seconds <= MIN_SECONDS:
        return None
    model, xs = lm.build_cpsat()
    if "max_time_in_seconds" not in params.solver_parameters:
        sp.max_time_in_seconds = max(0.0, until - time.monotonic())
        if sp.max_time_in_seconds <= MIN_SECONDS:
            return None
    solver.parameters.copy_from(sp)
    for v, h in zip(xs, hint, strict=True):
        model.add_hint(v, h)
    code = solver.solve(model)
    status = solver.status_name(code)
    if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        if code != cp_model.UNKNOWN:  # UNKNOWN: out of time before a solution, expected
            log.warning("CP-SAT ended %s on a model of %d variables", status, lm.size)
        return SearchOutcome(status, solver.wall_time)
    counts = tuple(int(solver.value(v)) for v in xs)
    return SearchOutcome(
        status,
        solver.wall_time,
        counts,
        lm.value(counts),
        lm.cpsat_bound(solver.best_objective_bound),
    )
