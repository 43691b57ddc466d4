"""One cycle of Valley's optimizer, phase by phase, on one time budget.

1. Filter and aggregate (``model``): the model of classes x pools.
2. Relax (``linear``): the LP gives the first bound; with the wake counts integer, a small MIP
   (``bound``) tightens it in a background thread.
3. Pack (``packing``) the rounded LP solution (``rounding``) and repair it (``repairs``).
4. Improve (``search``): CP-SAT, hinted with that answer, searches the integer model in the
   time left; a better decision is packed and repaired too, and the better placement kept.
With no time at all, or no relaxation, the greedy answer is returned (FALLBACK).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scheduler.domain import ReplicaPlacement
from scheduler.solver.budget import TimeBudget
from scheduler.solver.filters import Eligibility, eligibility_of
from scheduler.solver.greedy import NodeIndex
from scheduler.solver.objective import evaluate
from scheduler.solver.problem import (
    PlacementResult,
    Problem,
    SolverParams,
    SolveStats,
    SolveStatus,
)
from scheduler.solver.result import build_result
from scheduler.solver.valley.bound import MipBound
from scheduler.solver.valley.model import Model, build_model, counts_of
from scheduler.solver.valley.packing import pack
from scheduler.solver.valley.repairs import run_repairs
from scheduler.solver.valley.repairs.leftovers import place_greedily
from scheduler.solver.valley.rounding import round_solution
from scheduler.solver.valley.search import improve
from scheduler.solver.valley.state import PackingState

# shares of the time left: the LP may take half (at least 50 ms); the MIP bound 70% of what
# is left then (it runs beside packing and CP-SAT); CP-SAT what is left after reserving as
# long as the first packing took, to pack a better decision should it find one
LP_SHARE, LP_LEAST_S = 0.5, 0.05
MIP_SHARE, MIP_LEAST_S = 0.7, 0.02
# the MIP bound is solved to within this share of the LP bound (CNY/h)
MIP_GAP_SHARE = 0.0005


def solve_valley(
    problem: Problem,
    params: SolverParams,
    *,
    seed: int = 0,
    deadline: float | None = None,
) -> PlacementResult:
    budget = TimeBudget.of(params.time_limit_s, deadline)
    index = NodeIndex(problem.cluster)
    elig = eligibility_of(
        problem.scenario, problem.cluster, ((w.id, w.spec) for w in problem.workloads), params
    )
    if budget.limit <= 0 or not any(not e.final_reason for e in elig.values()):
        # no time for the solver (or nothing it could place): the greedy answer
        return _greedy_answer(problem, params, elig, index, budget)

    stats: dict[str, Any] = {}
    no_work = Problem(problem.scenario, problem.cluster, (), problem.hour, problem.month)
    model = build_model(problem, params, elig, index, evaluate(no_work, {}, params).objective)
    stats.update(
        model_variables=model.lm.size,
        model_constraints=len(model.lm.rows),
        model_classes=len(model.classes),
        build_seconds=budget.elapsed(),
    )

    # 1. the relaxation: a lower bound, and rounded and packed, a first complete answer
    t = time.monotonic()
    lp = model.lm.solve_lp(budget.share(LP_SHARE, LP_LEAST_S))
    stats.update(lp_seconds=time.monotonic() - t, lp_status=lp.status)
    bound, stats["bound_source"] = (lp.bound, "lp") if lp.solved else (None, "")
    mip: MipBound | None = None
    if lp.bound is not None and model.wake_vars and params.mip_bound:
        gap = MIP_GAP_SHARE * abs(lp.bound)
        mip = MipBound(model.lm, budget.share(MIP_SHARE, MIP_LEAST_S), model.wake_vars, gap)
        mip.start()
    t = time.monotonic()
    if lp.solved:
        best = _packed(problem, params, elig, index, model, round_solution(model, lp.x), budget)
        status = SolveStatus.FEASIBLE
    else:
        state = PackingState(problem, params, elig, index=index)
        place_greedily(state)
        best = _Packing(state, state.placements())
        status = SolveStatus.FALLBACK
        stats["fallback"] = True
    stats["pack_seconds"] = pack_seconds = time.monotonic() - t
    repairs, failed = list(best.applied), list(best.failed)

    # 2. CP-SAT, hinted with that answer, improves the integer decision while time remains
    hint = counts_of(model, problem.cluster, best.state.cluster, best.placements)
    out = improve(
        model.lm, hint, params, seed=seed, seconds=budget.left() - pack_seconds, bound=bound
    )
    if out is not None:
        stats.update(cpsat_status=out.status, cpsat_seconds=out.seconds)
    if out is not None and out.value is not None:
        stats["cpsat_objective"] = out.value
        if out.bound is not None and (bound is None or out.bound > bound):
            bound, stats["bound_source"] = out.bound, "cpsat"
        status = SolveStatus.OPTIMAL if out.status == "OPTIMAL" else SolveStatus.FEASIBLE
        if out.value < model.lm.value(hint) - 1e-9:
            # a better decision: pack it too and keep the better of the two placements
            alt = _packed(problem, params, elig, index, model, out.counts, budget)
            if (
                evaluate(problem, alt.placements, params).objective
                < evaluate(problem, best.placements, params).objective
            ):
                best = alt
                stats["cpsat_improved"] = True
            repairs += alt.applied
            failed += alt.failed
    if mip is not None:
        outcome = mip.result(budget)
        stats["mip_seconds"] = mip.seconds
        if outcome is not None:
            stats["mip_status"] = outcome.status
            if outcome.bound is not None and (bound is None or outcome.bound > bound):
                bound, stats["bound_source"] = outcome.bound, "mip"
    stats.update(repairs_applied=tuple(repairs), repairs_failed=tuple(failed))
    return build_result(
        problem,
        params,
        best.placements,
        elig,
        best.state.cluster,
        status,
        budget.start,
        bound,
        SolveStats(**stats),
    )


@dataclass
class _Packing:
    """A packed (and repaired) state, its placements and what its repairs did."""

    state: PackingState
    placements: dict[str, tuple[ReplicaPlacement, ...]]
    applied: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()


def _packed(
    problem: Problem,
    params: SolverParams,
    elig: Mapping[str, Eligibility],
    index: NodeIndex,
    model: Model,
    counts: Sequence[int],
    budget: TimeBudget,
) -> _Packing:
    """A new state with ``counts`` packed and repaired."""
    state = PackingState(problem, params, elig, index=index)
    pack(state, model, counts)
    applied, failed = run_repairs(state, params.repairs, budget)
    return _Packing(state, state.placements(), tuple(applied), tuple(failed))


def _greedy_answer(
    problem: Problem,
    params: SolverParams,
    elig: Mapping[str, Eligibility],
    index: NodeIndex,
    budget: TimeBudget,
) -> PlacementResult:
    state = PackingState(problem, params, elig, index=index)
    open_work = bool(state.open_workloads())
    place_greedily(state)
    status = SolveStatus.FALLBACK if open_work else SolveStatus.OPTIMAL
    return build_result(
        problem,
        params,
        state.placements(),
        elig,
        state.cluster,
        status,
        budget.start,
        None,
        SolveStats(fallback=open_work),
    )
