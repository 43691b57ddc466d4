"""Time shifting: deferrable work placed to start at a cheaper or greener hour.

A deferrable workload (``starts.is_deferrable``) may start now or at any whole hour h of
the timeline's horizon from which it ends by its deadline (``starts.start_hours``). Its
energy and priced carbon are counted at the mean rates of the hours it runs in, whether it
starts now or later (per hour of its run: the objective's unit), so that its starts compare like
with like. Work placed to start later holds no capacity now and wakes no node now: it is
charged its dynamic power at the hours it runs (whether its node is powered then is not known
now).

One solve with time (``solve_in_time``):

1. The joint model (``time_model``): the pipeline's model of the whole batch, plus per
   deferrable class, pool and start hour h a count of replicas starting then (``y``), and per
   pool and hour ahead the timeline's capacity, shared by every placement running in that hour
   (those starting now included). Its LP relaxes the node-level problem with the time decision:
   it is the reported bound.
2. Each deferrable workload takes the start the LP gives most of (``_choose_starts``); those
   to start later are packed onto nodes with room in every hour they run
   (``hourly.pack_later``: a GANG whole in one site, GPU replicas on the GPUs they will take),
   trying other starts, cheapest first, where the LP's has no room.
3. The rest (services, work without a deadline, deferrable work starting now, or that found no
   room later) is solved by the pipeline as a problem of its own, on a copy of the cluster whose
   free capacity is what is free in every hour that work may run (``blocked_cluster``), so no
   placement now takes capacity a reservation needs.
4. The result joins both, scored on the cluster as it is (``_join``).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from scheduler.domain import Cost, ReplicaPlacement, Topology, attributed_watts, dynamic_watts
from scheduler.domain.forecast import HOUR_S, hour_of
from scheduler.domain.timeline import hours_covering
from scheduler.solver.budget import TimeBudget
from scheduler.solver.filters import Eligibility
from scheduler.solver.greedy import NodeIndex
from scheduler.solver.objective import (
    apply_placements,
    carbon_price,
    evaluate,
    evaluate_state,
)
from scheduler.solver.problem import (
    Breakdown,
    PlacementResult,
    Problem,
    SolverParams,
)
from scheduler.solver.runs import RunRates
from scheduler.solver.valley.bound import MipBound
from scheduler.solver.valley.hourly import HourlyFree, blocked_cluster, pack_later
from scheduler.solver.valley.linear import LinearModel
from scheduler.solver.valley.model import RESOURCES, Model, WorkloadClass, amounts, build_model

# share of the budget the joint LP may take (at least this many seconds), and its MIP bound
TIME_LP_SHARE, TIME_LP_LEAST_S = 0.3, 0.05
MIP_SHARE, MIP_LEAST_S, MIP_GAP_SHARE = 0.7, 0.02, 0.0005
REST_LEAST_S = 0.02

Solve = Callable[[Problem, SolverParams, float | None], PlacementResult]


@dataclass
class _TimeClass:
    """A deferrable class of the joint model: its start hours and their variables."""

    cls: WorkloadClass
    duration_s: int
    y: dict[tuple[int, int], int]  # (pool, start hour) -> variable


def solve_in_time(
    problem: Problem,
    params: SolverParams,
    elig: Mapping[str, Eligibility],
    starts: Mapping[str, tuple[int, ...]],
    budget: TimeBudget,
    solve_rest: Solve,
) -> PlacementResult:
    """See the module docstring; ``solve_rest`` solves step 3's problem (the pipeline, with
    time shifting off) by an absolute ``time.monotonic()`` deadline."""
    assert problem.now is not None and problem.timeline is not None
    timeline = problem.timeline
    if timeline.base < hour_of(problem.now):  # the caller's timeline lags: look from now
        timeline = timeline.copy()
        timeline.advance(hour_of(problem.now))
        problem = replace(problem, timeline=timeline)
    index = NodeIndex(problem.cluster)
    rates = RunRates(problem, carbon_price(problem, params), timeline.end)
    free = HourlyFree.of(timeline, _columns_needed(problem, starts))
    t_lp = time.monotonic()
    model, tclasses = time_model(problem, params, elig, index, starts, rates, free)
    lp = model.lm.solve_lp(budget.share(TIME_LP_SHARE, TIME_LP_LEAST_S))
    later: dict[str, tuple[int, tuple[ReplicaPlacement, ...]]] = {}
    if lp.solved and tclasses:
        chosen = _choose_starts(problem, tclasses, lp.x, rates)
        later = pack_later(problem, elig, index, chosen, rates, free)
    lp_seconds = time.monotonic() - t_lp
    mip = None
    if lp.bound is not None and model.wake_vars and params.mip_bound:
        # the bound with the wake counts and workloads integer, beside the rest's solve
        share = budget.share(MIP_SHARE, MIP_LEAST_S)
        mip = MipBound(model.lm, share, model.bound_integers, MIP_GAP_SHARE * abs(lp.bound))
        mip.start()
    rest = tuple(w for w in problem.workloads if w.id not in later)
    sub = Problem(
        scenario=problem.scenario,
        cluster=blocked_cluster(problem, rest, free),
        workloads=rest,
        hour=problem.hour,
        month=problem.month,
        gpu_target=problem.gpu_target,
        now=problem.now,
        forecast=problem.forecast,
        priorities=tuple(sorted({w.spec.priority for w in problem.workloads})),
    )
    # the rest gets a little time even when the joint model took the budget: its greedy
    # fallback is much worse than a short solve
    deadline = max(budget.end, time.monotonic() + REST_LEAST_S)
    # the rest's own bound is not reported (the joint model's is): no MIP bound for it
    result = solve_rest(sub, replace(params, time_shifting=False, mip_bound=False), deadline)
    stats = {"lp_seconds": lp_seconds, "lp_status": lp.status, "bound_source": "lp"}
    bound = lp.bound
    outcome = None if mip is None else mip.result(budget)
    if mip is not None:
        stats.update(mip_seconds=mip.seconds, mip_status=outcome.status if outcome else "")
    if outcome and outcome.bound is not None and bound is not None and outcome.bound > bound:
        bound, stats["bound_source"] = outcome.bound, "mip"
    if bound is None:
        stats["bound_source"] = ""
    return _join(problem, params, elig, result, later, rates, bound, budget.start, stats)


def without_reserved(problem: Problem) -> Problem:
    """``problem`` on a copy of its cluster with the capacity reservations need in the hours
    its work may run taken out (``blocked_cluster``): a batch without deferrable work while
    reservations exist. Its objective then counts that capacity on powered nodes as drawn
    (the bound is of the same objective, so the gap stays true)."""
    assert problem.now is not None and problem.timeline is not None
    timeline = problem.timeline
    if timeline.base < hour_of(problem.now):
        timeline = timeline.copy()
        timeline.advance(hour_of(problem.now))
        problem = replace(problem, timeline=timeline)
    free = HourlyFree.of(timeline, _columns_needed(problem, {}))
    cluster = blocked_cluster(problem, problem.workloads, free)
    return replace(problem, cluster=cluster, timeline=None)


def _columns_needed(problem: Problem, starts: Mapping[str, tuple[int, ...]]) -> int:
    """Hours of the timeline a solve looks at: to the end of the latest run that may start
    later, and to the end of what runs from now (the horizon for work without an end)."""
    assert problem.now is not None and problem.timeline is not None
    tl = problem.timeline
    last = 2
    specs = {w.id: w.spec for w in problem.workloads}
    for wid, hours in starts.items():
        _, end = hours_covering(hours[-1] * HOUR_S, specs[wid].duration_s)
        last = max(last, (tl.end if end is None else end) - tl.base)
    for w in problem.workloads:
        _, end = hours_covering(problem.now.timestamp(), w.spec.duration_s)
        if end is None:
            return tl.horizon
        last = max(last, end - tl.base)
    return min(tl.horizon, last)


def time_model(
    problem: Problem,
    params: SolverParams,
    elig: Mapping[str, Eligibility],
    index: NodeIndex,
    starts: Mapping[str, tuple[int, ...]],
    rates: RunRates,
    free: HourlyFree,
) -> tuple[Model, list[_TimeClass]]:
    """The joint model (module docstring, step 1), on the cluster as it is now."""
    assert problem.now is not None and problem.timeline is not None
    now_s = problem.now.timestamp()
    base_cost = evaluate(replace(problem, workloads=()), {}, params).objective
    extra = {w.id: (w.spec.duration_s, starts[w.id]) for w in problem.workloads if w.id in starts}
    model = build_model(problem, params, elig, index, base_cost, extra)
    lm = model.lm
    pools = problem.cluster.pools
    tclasses: list[_TimeClass] = []
    for ci, c in enumerate(model.classes):
        hours = starts.get(c.members[0])
        if hours is None:
            continue
        d = c.spec.duration_s
        n_max = c.spec.replica_count * len(c.members)
        y: dict[tuple[int, int], int] = {}
        for pi in c.x:
            # (starting now, ``build_model`` prices it at the mean rates of its run too)
            dyn = dynamic_watts(pools[pi], c.spec.resources)
            for h in hours:
                unit = dyn * rates.cost(pools[pi].site, h * HOUR_S, d).money
                y[(pi, h)] = lm.var(f"y[{ci},{pi},{h}]", 0, n_max, unit)
        _extend_row(lm, c.placed_row, list(y.values()))
        if c.spec.topology == Topology.GANG:
            _add_gang_starts(lm, ci, c, y, hours)
        tclasses.append(_TimeClass(c, d, y))
    _add_hour_capacity(model, problem, index, tclasses, now_s, free)
    return model, tclasses


def _extend_row(lm: LinearModel, row: int, variables: list[int]) -> None:
    """Row ``row`` of ``lm`` with ``variables`` added, each with coefficient 1."""
    idx, coef, lo, hi = lm.rows[row]
    lm.rows[row] = (idx + variables, coef + [1] * len(variables), lo, hi)


def _add_gang_starts(
    lm: LinearModel,
    ci: int,
    c: WorkloadClass,
    y: dict[tuple[int, int], int],
    hours: tuple[int, ...],
) -> None:
    """A GANG starting later: ``g[s, h]`` workloads wholly in site s starting at hour h (all
    replicas in one site, all at one start), counted with those placed now (``c.g``) as the
    workloads placed."""
    n = c.spec.replica_count
    added: list[int] = []
    for site, site_pools in c.elig.pools_by_site.items():
        for h in hours:
            ys = [y[(p, h)] for p in site_pools if (p, h) in y]
            if not ys:
                continue
            g = lm.var(f"g[{ci},{site},{h}]", 0, len(c.members))
            lm.row([*ys, g], [1] * len(ys) + [-n], 0, 0)
            added.append(g)
    _extend_row(lm, c.gang_row, added)


def _add_hour_capacity(
    model: Model,
    problem: Problem,
    index: NodeIndex,
    tclasses: list[_TimeClass],
    now_s: float,
    free: HourlyFree,
) -> None:
    """Per pool with work starting later and per hour that work may run in: what runs then
    (starting later, or now and still running) fits the pool's free capacity of that hour, in
    every capacity row of the model (CPU, memory, whole GPUs, GPU millis, GPU slots)."""
    assert problem.timeline is not None
    base = problem.timeline.base
    # pool -> hour -> [(variable, demand per replica)]
    users: dict[int, dict[int, list[tuple[int, dict[str, int]]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for tc in tclasses:
        need = amounts(tc.cls.spec.resources)
        for (pi, h), v in tc.y.items():
            first, end = hours_covering(h * HOUR_S, tc.duration_s)
            assert end is not None
            for hh in range(first, end):
                users[pi][hh].append((v, need))
    for c in model.classes:
        need = amounts(c.spec.resources)
        _, end = hours_covering(now_s, c.spec.duration_s)
        for pi, v in c.x.items():
            if pi not in users:
                continue
            for hh, entries in users[pi].items():
                if end is None or hh < end:
                    entries.append((v, need))
    for pi, by_hour in users.items():
        nodes = index.by_pool[pi]
        for hh, entries in sorted(by_hour.items()):
            pool_free = free.pool_free(nodes, hh - base)
            for res in RESOURCES:
                used = [(v, need[res]) for v, need in entries if need[res]]
                if used:
                    model.lm.row([v for v, _ in used], [a for _, a in used], hi=pool_free[res])


def _choose_starts(
    problem: Problem, tclasses: list[_TimeClass], x: tuple[float, ...], rates: RunRates
) -> dict[str, list[int]]:
    """Per deferrable workload the LP starts later: its start hours to try, the LP's first,
    then the others cheapest first, none dearer than starting now. The members of a class
    take the starts in proportion to the replicas the LP starts then."""
    assert problem.now is not None
    now_s = problem.now.timestamp()
    pools = problem.cluster.pools
    out: dict[str, list[int]] = {}
    for tc in tclasses:
        c = tc.cls
        n = c.spec.replica_count
        mass: dict[int | None, float] = defaultdict(float)
        mass[None] = sum(x[v] for v in c.x.values()) / n
        for (_, h), v in tc.y.items():
            mass[h] += x[v] / n

        # the cheapest pool's money per watt for each start (None: now)
        price = {
            h: min(
                rates.cost(pools[p].site, now_s if h is None else h * HOUR_S, tc.duration_s).money
                for p in c.x
            )
            for h in mass
        }
        hours = sorted((h for h in mass if h is not None), key=lambda h: price[h])
        for wid in c.members:
            pick = max(mass, key=lambda h: (mass[h] > 0.5, mass[h], h is None))
            if mass[pick] <= 1e-6:
                break  # the LP leaves the rest unplaced: the pipeline tries them now
            mass[pick] -= 1.0
            if pick is None:
                continue
            out[wid] = [pick] + [h for h in hours if h != pick and price[h] < price[None]]
    return out


def _join(
    problem: Problem,
    params: SolverParams,
    elig: Mapping[str, Eligibility],
    now: PlacementResult,
    later: Mapping[str, tuple[int, tuple[ReplicaPlacement, ...]]],
    rates: RunRates,
    bound: float | None,
    started: float,
    time_stats: Mapping[str, Any],
) -> PlacementResult:
    """One result of the work started now and the work started later (module docstring)."""
    specs = {w.id: w.spec for w in problem.workloads}
    placements = {**now.placements, **{wid: reps for wid, (_, reps) in later.items()}}
    after = apply_placements(problem.cluster, problem, now.placements)
    never_fits = {wid for wid, e in elig.items() if e.final_reason}
    # the work started now is counted at its runs' rates by the objective (``run_priced``)
    b = evaluate_state(problem, after, placements, params, never_fits, later=later.keys())
    # ... and so are their costs (``build_result``): what is left is the work started later
    energy = carbon = 0.0
    costs = dict(now.costs)
    pools = problem.cluster.pools
    for wid, (hour, reps) in later.items():
        spec = specs[wid]
        start_s = hour * HOUR_S
        cost = Cost()
        for rp in reps:
            pool = pools[int(problem.cluster.node_pool[problem.cluster.index[rp.node]])]
            dyn = dynamic_watts(pool, spec.resources)
            run = rates.cost(rp.site, start_s, spec.duration_s)
            energy += dyn * run.energy_cny
            carbon += dyn * run.carbon_kg
            cost = cost + rates.rates(rp.site, start_s, spec.duration_s).cost(
                attributed_watts(pool, spec.resources)
            )
        costs[wid] = cost
    cprice = rates.cprice
    breakdown = Breakdown(
        b.energy_cny_per_hour + energy,
        b.carbon_kg_per_hour + carbon,
        b.carbon_cny_per_hour + carbon * cprice / 1000.0,
        b.latency_cny_per_hour,
        b.headroom_cny_per_hour,
        b.unplaced_cny_per_hour,
        b.power_watts,
    )
    objective = breakdown.objective
    if bound is not None and objective < bound <= objective * (1 + 1e-9) + 1e-9:
        bound = objective  # rounding noise of the LP
    # the bound is the joint model's: the rest's own bounds hold for the rest alone
    changes: dict[str, Any] = {"mip_seconds": None, "mip_status": "", "decision_objective": None}
    changes.update(time_stats, deferred_workloads=len(later))
    stats = replace(now.stats, **changes)
    unplaced = {wid: u for wid, u in now.unplaced.items() if wid not in later}
    return PlacementResult(
        policy=params.policy,
        status=now.status,
        placements=placements,
        unplaced=unplaced,
        costs=costs,
        objective=objective,
        bound=bound,
        solve_seconds=time.monotonic() - started,
        breakdown=breakdown,
        stats=stats,
    )
