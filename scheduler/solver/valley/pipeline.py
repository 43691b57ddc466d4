"""One cycle of Valley's optimizer, phase by phase, on one time budget.

1. Filter and aggregate (``model``): the model of classes x pools.
2. Relax (``linear``): the LP gives the first bound; with the wake and workload counts
   integer, a MIP (``bound``) tightens it in a background thread.
3. Pack (``packing``) the rounded LP solution (``rounding``) and repair it (``repairs``).
4. Improve (``search``): CP-SAT, hinted with that answer, searches the integer model in the
   time left; a better decision is packed and repaired too, and the better placement kept.
With no time at all, or no relaxation, the greedy answer is returned (FALLBACK).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from scheduler.domain import ReplicaPlacement
from scheduler.solver.budget import TimeBudget
from scheduler.solver.filters import Eligibility, eligibility_of
from scheduler.solver.greedy import NodeIndex
from scheduler.solver.objective import evaluate, evaluate_state
from scheduler.solver.problem import (
    PlacementResult,
    Problem,
    SolverParams,
    SolveStats,
    SolveStatus,
)
from scheduler.solver.result import build_result
from scheduler.solver.valley.bound import MipBound
from scheduler.solver.valley.cuts import add_gpu_share_cuts, add_node_fit_cuts, node_fit_rows
from scheduler.solver.valley.linear import Relaxation
from scheduler.solver.valley.model import Model, build_model, counts_of
from scheduler.solver.valley.packing import pack
from scheduler.solver.valley.repairs import run_repairs
from scheduler.solver.valley.repairs.leftovers import place_greedily
from scheduler.solver.valley.rounding import greedy_solution, round_solution
from scheduler.solver.valley.search import improve
from scheduler.solver.valley.shifting import Solve, solve_in_time, without_reserved
from scheduler.solver.valley.starts import shifting_applies, start_hours
from scheduler.solver.valley.state import PackingState

# shares of the time left: the LP may take half (at least 50 ms); the MIP bound 70% of what
# is left then (it runs beside packing and CP-SAT); CP-SAT what is left after reserving as
# long as the first packing took, to pack a better decision should it find one
LP_SHARE, LP_LEAST_S = 0.5, 0.05
MIP_SHARE, MIP_LEAST_S = 0.7, 0.02
# the result (costs per workload, the objective, reasons for what is left out) takes about
# twice as long as turning a packing into placements (both go replica by replica): CP-SAT ends
# that long before the limit (0.2 s at 50k replicas, 0.04 s at 10k)
RESULT_RESERVE = 2.0
# the garbage collector is paused for solves of at least this many replicas
GC_PAUSE_REPLICAS = 5000
# rounds of adding the per-node limit rows the LP's solution breaks (``Model.lazy``)
LAZY_ROUNDS = 3
# the MIP bound is solved to within this share of the LP bound (CNY/h)
MIP_GAP_SHARE = 0.0005


def solve_valley(
    problem: Problem,
    params: SolverParams,
    *,
    seed: int = 0,
    deadline: float | None = None,
) -> PlacementResult:
    """Valley's placement of ``problem`` within ``params.time_limit_s`` (and ``deadline``, a
    ``time.monotonic()`` instant): the phases in the module docstring."""
    large = sum(w.spec.replica_count for w in problem.workloads) >= GC_PAUSE_REPLICAS
    with _collector_paused(large):
        return _solve(problem, params, seed, deadline)


@contextmanager
def _collector_paused(pause: bool) -> Iterator[None]:
    """Python's cyclic garbage collector off for a large solve (``pause``): packing 50k
    replicas makes some 300k small objects (slots, placements), none of them in cycles, and
    the collections they set off (each scanning every object the problem holds) took 40% of
    packing's time. The collector runs again once the solve ends (and stays off if it was off
    before). Small solves, a service's cycles among them, leave it alone: a process that
    solves back to back would otherwise rarely collect."""
    was_on = gc.isenabled()
    if pause:
        gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def _solve(
    problem: Problem, params: SolverParams, seed: int, deadline: float | None
) -> PlacementResult:
    budget = TimeBudget.of(params.time_limit_s, deadline)
    index = NodeIndex(problem.cluster)
    elig = eligibility_of(
        problem.scenario, problem.cluster, ((w.id, w.spec) for w in problem.workloads), params
    )
    starts = start_hours(problem, params, elig)
    if starts:  # deferrable work: the time decision too
        return solve_in_time(problem, params, elig, starts, budget, _solve_rest(seed))
    if shifting_applies(problem, params) and _has_reservations(problem):
        # work placed now leaves the capacity reservations hold
        problem = without_reserved(problem)
    if budget.limit <= 0 or not any(not e.final_reason for e in elig.values()):
        # no time for the solver (or nothing it could place): the greedy answer
        return _greedy_answer(problem, params, elig, index, budget)
    run = _Run(problem, params, elig, index, budget)
    model = run.build()
    lp = run.relax(model)
    mip = run.start_mip_bound(model, lp)
    best = run.first_answer(model, lp)
    best = run.improve(model, best, seed)
    if mip is not None:
        run.collect_mip_bound(mip)
    return run.result(best)


def _solve_rest(seed: int) -> Solve:
    def solve_rest(
        problem: Problem, params: SolverParams, deadline: float | None
    ) -> PlacementResult:
        return solve_valley(problem, params, seed=seed, deadline=deadline)

    return solve_rest


def _has_reservations(problem: Problem) -> bool:
    return problem.timeline is not None and problem.timeline.reserved > 0


@dataclass
class _Packing:
    """A packed (and repaired) state and its placements."""

    state: PackingState
    placements: dict[str, tuple[ReplicaPlacement, ...]]


@dataclass
class _Bound:
    """The best proven bound so far and which solver proved it."""

    value: float | None = None
    source: str = ""

    def offer(self, value: float | None, source: str) -> None:
        if value is not None and (self.value is None or value > self.value):
            self.value, self.source = value, source


class _Run:
    """One solve's phases, sharing what they learn: the statistics, the bound, the status."""

    def __init__(
        self,
        problem: Problem,
        params: SolverParams,
        elig: Mapping[str, Eligibility],
        index: NodeIndex,
        budget: TimeBudget,
    ) -> None:
        self.problem, self.params, self.elig, self.index = problem, params, elig, index
        self.budget = budget
        self.never_fits = {wid for wid, e in elig.items() if e.final_reason}
        self.stats: dict[str, Any] = {}
        self.bound = _Bound()
        self.status = SolveStatus.FEASIBLE
        self.repairs: list[str] = []
        self.failed: list[str] = []
        self.placing_s = 0.0  # the longest ``PackingState.placements()`` took (see improve)

    def build(self) -> Model:
        p = self.problem
        no_work = replace(p, workloads=())
        base = evaluate(no_work, {}, self.params).objective
        model = build_model(p, self.params, self.elig, self.index, base)
        cuts = add_node_fit_cuts(model.lm, p.cluster, self.index, model.classes, model.pools)
        # the same cuts over the replicas at least as large: many, and rarely broken at 10k
        # (they doubled the LP's nonzeros), so added only where the LP breaks one
        model.lazy += node_fit_rows(
            model.lm, p.cluster, self.index, model.classes, model.pools, larger=True
        )
        cuts += add_gpu_share_cuts(model.lm, p.cluster, self.index, model.classes, model.pools)
        self.stats.update(
            node_fit_cuts=cuts,
            model_variables=model.lm.size,
            model_constraints=len(model.lm.rows),
            model_classes=len(model.classes),
            build_seconds=self.budget.elapsed(),
        )
        return model

    def relax(self, model: Model) -> Relaxation:
        """The LP: the first bound, and the solution to round."""
        t = time.monotonic()
        lp = model.lm.solve_lp(self.budget.share(LP_SHARE, LP_LEAST_S))
        # the per-node limit rows the solution breaks, then the LP again (each LP is a
        # relaxation, with or without them: a re-solve out of time keeps the last one)
        for _ in range(LAZY_ROUNDS):
            if not lp.solved or not model.add_violated(lp.x):
                break
            again = model.lm.solve_lp(self.budget.share(LP_SHARE, LP_LEAST_S))
            if not again.solved:
                break
            lp = again
        self.stats.update(lp_seconds=time.monotonic() - t, lp_status=lp.status)
        self.bound.offer(lp.bound, "lp")
        model.price_racks()  # for the MIP bound and CP-SAT (the LP's bound holds without)
        return lp

    def start_mip_bound(self, model: Model, lp: Relaxation) -> MipBound | None:
        """The bound with the wake counts and the workloads placed integer
        (``Model.bound_integers``), in the background; it only ever raises the reported
        bound, never changes the placement."""
        if lp.bound is None or not model.wake_vars or not self.params.mip_bound:
            return None
        share = self.budget.share(MIP_SHARE, MIP_LEAST_S)
        mip = MipBound(model.lm, share, model.bound_integers, MIP_GAP_SHARE * abs(lp.bound))
        mip.start()
        return mip

    def first_answer(self, model: Model, lp: Relaxation) -> _Packing:
        """The LP's solution rounded, packed and repaired (the LP's packs better than the
        MIP's: its fractional wake counts leave packing some slack); without an LP (out of
        time), a greedy decision of the same model, packed and repaired the same way (placing
        replica by replica would take seconds at 50k)."""
        t = time.monotonic()
        if lp.solved:
            best = self._packed(model, round_solution(model, lp.x))
        else:
            best = self._packed(model, round_solution(model, greedy_solution(model)))
            self.status = SolveStatus.FALLBACK
            self.stats["fallback"] = True
        self.stats["pack_seconds"] = time.monotonic() - t
        return best

    def improve(self, model: Model, best: _Packing, seed: int) -> _Packing:
        """CP-SAT, hinted with ``best``, in the time left but what packing took the first
        time (to pack a better decision, should it find one) and what the result will take."""
        hint = counts_of(model, self.problem.cluster, best.state.cluster, best.placements)
        hint_value = model.lm.value(hint)
        self.stats["decision_objective"] = hint_value
        until = self.budget.end - self.stats["pack_seconds"] - RESULT_RESERVE * self.placing_s
        out = improve(model.lm, hint, self.params, seed=seed, until=until, bound=self.bound.value)
        if out is None:
            return best
        self.stats.update(cpsat_status=out.status, cpsat_seconds=out.seconds)
        if out.value is None:
            return best
        self.stats["cpsat_objective"] = out.value
        self.bound.offer(out.bound, "cpsat")
        self.status = SolveStatus.OPTIMAL if out.status == "OPTIMAL" else SolveStatus.FEASIBLE
        if out.value >= hint_value - 1e-9:
            return best
        self.stats["decision_objective"] = out.value
        # a better decision: pack it too and keep the better of the two placements
        alt = self._packed(model, out.counts)
        if self._objective(alt) < self._objective(best):
            self.stats["cpsat_improved"] = True
            return alt
        return best

    def collect_mip_bound(self, mip: MipBound) -> None:
        outcome = mip.result(self.budget)
        self.stats["mip_seconds"] = mip.seconds
        if outcome is not None:
            self.stats["mip_status"] = outcome.status
            self.bound.offer(outcome.bound, "mip")

    def result(self, best: _Packing) -> PlacementResult:
        self.stats.update(
            bound_source=self.bound.source,
            repairs_applied=tuple(self.repairs),
            repairs_failed=tuple(self.failed),
        )
        return build_result(
            self.problem,
            self.params,
            best.placements,
            self.elig,
            best.state.cluster,
            self.status,
            self.budget.start,
            self.bound.value,
            SolveStats(**self.stats),
        )

    def _objective(self, packing: _Packing) -> float:
        """The objective of a packing, from the cluster state it already holds."""
        return evaluate_state(
            self.problem, packing.state.cluster, packing.placements, self.params, self.never_fits
        ).objective

    def _packed(self, model: Model, counts: Sequence[int]) -> _Packing:
        """A new state with ``counts`` packed and repaired."""
        state = PackingState(self.problem, self.params, self.elig, index=self.index)
        pack(state, model, counts)
        applied, failed = run_repairs(state, self.params.repairs, self.budget)
        self.repairs += applied
        self.failed += failed
        t = time.monotonic()
        placements = state.placements()
        self.placing_s = max(self.placing_s, time.monotonic() - t)
        return _Packing(state, placements)


def _greedy_answer(
    problem: Problem,
    params: SolverParams,
    elig: Mapping[str, Eligibility],
    index: NodeIndex,
    budget: TimeBudget,
) -> PlacementResult:
    open_work = any(not e.final_reason for e in elig.values())
    packing = _greedy(problem, params, elig, index)
    status = SolveStatus.FALLBACK if open_work else SolveStatus.OPTIMAL
    return build_result(
        problem,
        params,
        packing.placements,
        elig,
        packing.state.cluster,
        status,
        budget.start,
        None,
        SolveStats(fallback=open_work),
    )


def _greedy(
    problem: Problem, params: SolverParams, elig: Mapping[str, Eligibility], index: NodeIndex
) -> _Packing:
    """The greedy answer: every workload placed one at a time (``place_greedily``)."""
    state = PackingState(problem, params, elig, index=index)
    place_greedily(state)
    return _Packing(state, state.placements())
