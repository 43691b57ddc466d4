"""Valley's optimizer: an aggregated model, bounded by a relaxation, improved with CP-SAT.

How one cycle is solved:

1. Filter: every workload gets the pools it may use per site (SLO, residency, GPU model, size).
2. Aggregate: identical workloads (same shape, replicas, eligible pools, topology, priority,
   latency cost) form a class; identical nodes form a pool. The model decides, per class, how
   many workloads are placed and how many replicas go to each pool, and per pool how many
   powered-down nodes to wake. The model is exact in its objective and a relaxation in its
   capacity (pool totals instead of per-node fit), so any relaxation of it gives a valid lower
   bound on the objective of every node-level placement.
3. Relax: the model with only the wake counts integer (a small MIP for HiGHS; GLOP's LP if
   that fails) gives the bound; rounded, then packed (4.), it gives a first complete answer.
4. Pack: counts go onto concrete nodes pool by pool, mixing shapes on each node, powered nodes
   first; replicas that do not fit move to another eligible pool; a workload that still does
   not fit whole is left out; nodes woken this cycle are emptied again where their replicas
   fit elsewhere; a greedy pass, cheapest site first, tries the workloads left out.
5. Improve: CP-SAT, hinted with the first answer and given the time left, searches the integer
   model; a better decision is packed too and the better placement kept. Its proven bound
   tightens the reported one. With no time at all, the greedy answer is returned (FALLBACK).

Money is in CNY per hour everywhere. Only modules of this package import OR-Tools.
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from ortools.linear_solver import pywraplp
from ortools.sat.python import cp_model

from scheduler.domain import (
    GPU_MILLIS,
    Cluster,
    ReplicaPlacement,
    Resources,
    Topology,
    WorkloadSpec,
    dynamic_watts,
)
from scheduler.solver import greedy
from scheduler.solver.binpack import min_bins
from scheduler.solver.filters import Eligibility, eligibility_of
from scheduler.solver.fragmentation import FragmentationScorer, RequestType
from scheduler.solver.objective import carbon_price, evaluate, site_rates, unplaced_penalties
from scheduler.solver.problem import (
    PendingWorkload,
    PlacementResult,
    Problem,
    SolverParams,
    SolveStatus,
)
from scheduler.solver.result import build_result

INF = math.inf
# CP-SAT needs integer objective coefficients: money in micro-CNY per hour, or coarser where
# the objective's terms would otherwise overflow 64 bits
MONEY_SCALE = 1_000_000
OBJECTIVE_LIMIT = 2**60
# pool capacity rows of the model. ``gpu_slots``: a whole GPU, or a share above half a GPU,
# takes a physical GPU no other such request can share, so their count is bounded by the GPUs
# with more than half free - a valid cut that the summed millis alone miss (two 0.8 shares do
# not fit one GPU)
RESOURCES = ("cpu_millis", "memory_mib", "gpus", "gpu_demand_millis", "gpu_slots")
HALF_GPU = GPU_MILLIS // 2


# --------------------------------------------------------------------------- a linear model


@dataclass
class LinearModel:
    """A small solver-neutral linear model, exported to CP-SAT (integer) and GLOP (LP), so the
    bound and the decision come from the very same model."""

    lb: list[float] = field(default_factory=list)
    ub: list[float] = field(default_factory=list)
    cost: list[float] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    rows: list[tuple[list[int], list[int], float, float]] = field(default_factory=list)
    constant: float = 0.0

    def var(self, name: str, lb: float, ub: float, cost: float = 0.0) -> int:
        self.lb.append(lb)
        self.ub.append(ub)
        self.cost.append(cost)
        self.names.append(name)
        return len(self.lb) - 1

    def row(
        self, idx: Sequence[int], coef: Sequence[int], lo: float = -INF, hi: float = INF
    ) -> None:
        self.rows.append((list(idx), list(coef), lo, hi))

    @property
    def size(self) -> int:
        return len(self.lb)

    def solve_relaxation(
        self, time_limit_s: float, integer: Sequence[int] = (), mip_gap: float = 1e-6
    ) -> tuple[float, list[float]] | None:
        """A relaxation's lower bound and solution: the variables listed in ``integer`` kept
        integer (a small MIP for HiGHS, solved to within ``mip_gap`` CNY/h), all others
        continuous; the plain LP (GLOP) if the MIP solver is missing or fails. None if neither
        finishes."""
        if integer:
            out = self._solve("HIGHS", time_limit_s, set(integer), mip_gap)
            if out is not None:
                return out
        return self._solve("GLOP", time_limit_s, set(), 0.0)

    def _solve(
        self, backend: str, time_limit_s: float, integer: set[int], mip_gap: float
    ) -> tuple[float, list[float]] | None:
        lp = pywraplp.Solver.CreateSolver(backend)
        if lp is None:
            return None
        lp.SuppressOutput()
        if backend == "HIGHS":
            # the objective carries the large rewards for placing work: a relative MIP gap
            # would be relative to them, so the search closes to an absolute gap in CNY/h
            lp.SetSolverSpecificParametersAsString(
                "output_flag=false\nlog_to_console=false\nmip_rel_gap=0\n"
                f"mip_abs_gap={max(mip_gap, 1e-9)!r}\n"
            )
        lp.SetTimeLimit(max(1, int(time_limit_s * 1000)))
        xs = [
            lp.IntVar(lo, hi, "") if i in integer else lp.NumVar(lo, hi, "")
            for i, (lo, hi) in enumerate(zip(self.lb, self.ub, strict=True))
        ]
        for idx, coef, lo, hi in self.rows:
            c = lp.Constraint(
                -lp.infinity() if lo == -INF else lo, lp.infinity() if hi == INF else hi
            )
            for i, a in zip(idx, coef, strict=True):
                c.SetCoefficient(xs[i], float(a))
        obj = lp.Objective()
        for x, c in zip(xs, self.cost, strict=True):
            if c:
                obj.SetCoefficient(x, c)
        obj.SetMinimization()
        # only a proven optimum is used: the interface's best bound of an unfinished MIP is
        # not reliable across backends
        if lp.Solve() != pywraplp.Solver.OPTIMAL:
            return None
        # a MIP proven optimal to within its absolute gap: the optimum is at least this
        bound = obj.Value() - (max(mip_gap, 1e-9) if integer else 0.0)
        if not math.isfinite(bound):
            return None
        return bound + self.constant, [x.solution_value() for x in xs]

    def build_cpsat(self) -> tuple[cp_model.CpModel, list[cp_model.IntVar]]:
        m = cp_model.CpModel()
        xs = [
            m.new_int_var(math.ceil(lo), math.floor(hi), n)
            for lo, hi, n in zip(self.lb, self.ub, self.names, strict=True)
        ]
        for idx, coef, lo, hi in self.rows:
            expr = cp_model.LinearExpr.weighted_sum([xs[i] for i in idx], coef)
            if lo == hi:
                m.add(expr == int(lo))
            else:
                if lo != -INF:
                    m.add(expr >= math.ceil(lo))
                if hi != INF:
                    m.add(expr <= math.floor(hi))
        nz = [(i, c) for i, c in enumerate(self.cost) if c]
        scale = self.money_scale
        m.minimize(
            cp_model.LinearExpr.weighted_sum(
                [xs[i] for i, _ in nz], [round(c * scale) for _, c in nz]
            )
        )
        return m, xs

    @property
    def money_scale(self) -> float:
        """Integer objective units per CNY/h for CP-SAT: micro-CNY unless the sum of the
        objective's terms over their domains would come near 2**63."""
        span = sum(
            abs(c) * max(abs(lo), abs(hi))
            for lo, hi, c in zip(self.lb, self.ub, self.cost, strict=True)
        )
        return min(float(MONEY_SCALE), OBJECTIVE_LIMIT / max(span, 1.0))

    def rounding_slack(self) -> float:
        """The most the CP-SAT objective (integer coefficients) can differ from the true
        objective over the variables' domains."""
        scale = self.money_scale
        return sum(
            abs(round(c * scale) - c * scale) / scale * max(abs(lo), abs(hi))
            for lo, hi, c in zip(self.lb, self.ub, self.cost, strict=True)
            if c
        )

    def value(self, x: Sequence[float]) -> float:
        return sum(c * v for c, v in zip(self.cost, x, strict=True)) + self.constant


# --------------------------------------------------------------------------- aggregation


@dataclass
class WorkloadClass:
    key: tuple[object, ...]
    spec: WorkloadSpec  # of the first member; members share everything the model uses
    members: list[str]  # workload ids, in arrival order
    elig: Eligibility
    penalty: float  # per workload left unplaced
    k: int = -1  # model variable: workloads placed
    x: dict[int, int] = field(default_factory=dict)  # pool -> variable: replicas in pool
    g: dict[str, int] = field(default_factory=dict)  # GANG: site -> variable: workloads there
    u: dict[str, int] = field(default_factory=dict)  # SPREAD: site -> variable: site used


def _class_key(
    spec: WorkloadSpec, elig: Eligibility, penalty: float, rtts: tuple[float, ...]
) -> tuple[object, ...]:
    if spec.topology == Topology.SPREAD:
        return ("spread", id(spec))  # one workload per class: min_sites is per workload
    return (
        spec.resources,
        spec.replica_count,
        tuple(sorted(elig.pools_by_site.items())),
        spec.topology,
        round(penalty, 9),
        rtts if spec.is_service else (),
    )


@dataclass
class PoolState:
    """What the model knows of a pool: free capacity on powered nodes, empty nodes to wake."""

    index: int
    site: str
    free_awake: dict[str, int]
    node_cap: dict[str, int]
    empty_nodes: int
    wake: int = -1  # model variable


def _amounts(r: Resources) -> dict[str, int]:
    return {
        "cpu_millis": r.cpu_millis,
        "memory_mib": r.memory_mib,
        "gpus": r.gpus,
        "gpu_demand_millis": r.gpu_demand_millis,
        "gpu_slots": r.gpus + (1 if r.gpu_millis > HALF_GPU else 0),
    }


def _pool_states(cluster: Cluster, index: greedy.NodeIndex) -> list[PoolState]:
    out = []
    for pi, pool in enumerate(cluster.pools):
        nodes = index.by_pool[pi]
        awake = nodes[cluster.replicas_on[nodes] > 0]
        g = cluster.gpu_free[awake]
        out.append(
            PoolState(
                index=pi,
                site=pool.site,
                free_awake={
                    "cpu_millis": int(cluster.free_cpu[awake].sum()),
                    "memory_mib": int(cluster.free_mem[awake].sum()),
                    "gpus": int((g == GPU_MILLIS).sum()),
                    "gpu_demand_millis": int(np.where(g > 0, g, 0).sum()),
                    "gpu_slots": int((g > HALF_GPU).sum()),
                },
                node_cap={
                    "cpu_millis": pool.node.cpu_millis,
                    "memory_mib": pool.node.memory_mib,
                    "gpus": pool.node.gpus,
                    "gpu_demand_millis": pool.node.gpus * GPU_MILLIS,
                    "gpu_slots": pool.node.gpus,
                },
                empty_nodes=len(nodes) - len(awake),
            )
        )
    return out


@dataclass
class Model:
    lm: LinearModel
    classes: list[WorkloadClass]
    pools: list[PoolState]
    # per site: the headroom variable and its row (sum coef * x - h <= hi)
    headroom: list[tuple[int, list[int], list[int], int]]


def build_model(
    problem: Problem,
    params: SolverParams,
    elig: Mapping[str, Eligibility],
    index: greedy.NodeIndex,
    base_cost: float,
) -> Model:
    cluster = problem.cluster
    scenario = problem.scenario
    rates = site_rates(problem)
    cprice = carbon_price(problem, params)
    money_per_watt = {s: rates[s].money_per_it_watt(cprice) for s in scenario.site_names}
    penalties = unplaced_penalties(problem, params)
    site_names = scenario.site_names

    # classes of identical workloads
    by_key: dict[tuple[object, ...], WorkloadClass] = {}
    for w in problem.workloads:
        e = elig[w.id]
        if e.final_reason:
            continue
        rtts = tuple(
            scenario.site(s).latency_ms[w.spec.origin] if w.spec.origin else 0.0 for s in site_names
        )
        key = _class_key(w.spec, e, penalties[w.id], rtts)
        cls = by_key.get(key)
        if cls is None:
            by_key[key] = WorkloadClass(key, w.spec, [w.id], e, penalties[w.id])
        else:
            cls.members.append(w.id)
    classes = list(by_key.values())
    pools = _pool_states(cluster, index)
    lm = LinearModel(constant=base_cost)
    used_pools: set[int] = set()

    for ci, c in enumerate(classes):
        spec = c.spec
        n = spec.replica_count
        count = len(c.members)
        # reward for placing (as a negative cost), the penalty of all members as a constant
        c.k = lm.var(f"k[{ci}]", 0, count, -c.penalty)
        lm.constant += c.penalty * count
        for site, site_pools in c.elig.pools_by_site.items():
            rtt = scenario.site(site).latency_ms[spec.origin] if spec.origin else 0.0
            lat = params.latency_cny_per_ms_hour * rtt if spec.is_service else 0.0
            for pi in site_pools:
                unit = dynamic_watts(cluster.pools[pi], spec.resources) * money_per_watt[site] + lat
                c.x[pi] = lm.var(f"x[{ci},{pi}]", 0, n * count, unit)
                used_pools.add(pi)
        # every replica of a placed workload is placed somewhere
        lm.row([*c.x.values(), c.k], [1] * len(c.x) + [-n], 0, 0)
        if spec.topology == Topology.GANG:
            # g[s] workloads wholly in site s
            for site, site_pools in c.elig.pools_by_site.items():
                if not site_pools:
                    continue
                c.g[site] = lm.var(f"g[{ci},{site}]", 0, count)
                lm.row(
                    [c.x[p] for p in site_pools] + [c.g[site]], [1] * len(site_pools) + [-n], 0, 0
                )
            lm.row([*c.g.values(), c.k], [1] * len(c.g) + [-1], 0, 0)
        elif spec.topology == Topology.SPREAD:
            # u[s] = 1 only if site s holds a replica; at least min_sites sites when placed
            for site, site_pools in c.elig.pools_by_site.items():
                if not site_pools:
                    continue
                c.u[site] = lm.var(f"u[{ci},{site}]", 0, 1)
                lm.row(
                    [c.u[site]] + [c.x[p] for p in site_pools], [1] + [-1] * len(site_pools), hi=0
                )
            lm.row([*c.u.values(), c.k], [1] * len(c.u) + [-spec.min_sites], lo=0)

    # pool capacity: demand <= free on powered nodes + capacity of the nodes woken
    for p in pools:
        if p.index not in used_pools:
            continue
        pool = cluster.pools[p.index]
        wake_cost = pool.idle_watts * money_per_watt[p.site]
        p.wake = lm.var(f"wake[{p.index}]", 0, p.empty_nodes, wake_cost)
        for res in RESOURCES:
            idx: list[int] = []
            coef: list[int] = []
            for c in classes:
                a = _amounts(c.spec.resources)[res]
                if a and p.index in c.x:
                    idx.append(c.x[p.index])
                    coef.append(a)
            if not idx:
                continue
            idx.append(p.wake)
            coef.append(-p.node_cap[res])
            lm.row(idx, coef, hi=p.free_awake[res])

    # headroom: CPU allocated above the target share of each site's capacity is penalised
    headroom: list[tuple[int, list[int], list[int], int]] = []
    for si, site in enumerate(site_names):
        on_site = cluster.node_site == si
        cap = int(cluster.cap_cpu[on_site].sum())
        used = cap - int(cluster.free_cpu[on_site].sum())
        allowed = params.headroom_target * cap - used  # millicores still below the target
        idx, coef = [], []
        for c in classes:
            for pi, v in c.x.items():
                if cluster.pools[pi].site == site and c.spec.resources.cpu_millis:
                    idx.append(v)
                    coef.append(c.spec.resources.cpu_millis)
        if not idx:
            continue
        h = lm.var(f"headroom[{site}]", 0, 2 * cap, params.headroom_cny_per_core_hour / 1000.0)
        # sum cpu - h <= allowed
        hi = math.floor(allowed) if allowed < cap else cap
        lm.row([*idx, h], [*coef, -1], hi=hi)
        headroom.append((h, idx, coef, hi))
    return Model(lm, classes, pools, headroom)


# --------------------------------------------------------------------------- solving


def _round_hint(model: Model, lp_x: Sequence[float]) -> list[int]:
    """A hint from the LP: whole workloads rounded down, replicas split like the LP's."""
    hint = [0] * model.lm.size
    for c in model.classes:
        n = c.spec.replica_count
        k = math.floor(lp_x[c.k] + 1e-6)
        hint[c.k] = k
        if c.spec.topology == Topology.GANG:
            remaining = k
            for _site, v in sorted(c.g.items(), key=lambda kv: -lp_x[kv[1]]):
                take = min(remaining, math.floor(lp_x[v] + 1e-6))
                hint[v] = take
                remaining -= take
            if remaining and c.g:
                best = max(c.g, key=lambda s: lp_x[c.g[s]])
                hint[c.g[best]] += remaining
            for site, v in c.g.items():
                pools = c.elig.pools_by_site[site]
                _split(hint, [c.x[p] for p in pools], lp_x, hint[v] * n)
        else:
            _split(hint, list(c.x.values()), lp_x, k * n)
            if c.u and k:
                _keep_spread(c, hint, lp_x)
            for site, v in c.u.items():
                hint[v] = int(any(hint[c.x[p]] > 0 for p in c.elig.pools_by_site[site]))
    for p in model.pools:
        if p.wake >= 0:
            hint[p.wake] = min(p.empty_nodes, math.ceil(lp_x[p.wake] - 1e-6))
    return hint


def _keep_spread(c: WorkloadClass, hint: list[int], lp_x: Sequence[float]) -> None:
    """A SPREAD workload's rounded replicas cover at least min_sites sites: each site the LP
    uses most gets one replica, taken from the site that has the most."""
    sites = sorted(c.u, key=lambda s: -lp_x[c.u[s]])[: c.spec.min_sites]

    def in_site(site: str) -> list[int]:
        return [c.x[p] for p in c.elig.pools_by_site[site]]

    for site in sites:
        if any(hint[v] for v in in_site(site)):
            continue
        donor = max((v for s in c.u if s != site for v in in_site(s)), key=lambda v: hint[v])
        if hint[donor] <= 1:
            return
        hint[donor] -= 1
        hint[max(in_site(site), key=lambda v: lp_x[v])] += 1


def _split(hint: list[int], vars_: Sequence[int], lp_x: Sequence[float], total: int) -> None:
    if not vars_:
        return
    weights = [max(0.0, lp_x[v]) for v in vars_]
    s = sum(weights)
    # largest remainder; the epsilon keeps 0.9999999 from losing its whole replica
    exact = [total * w / s for w in weights] if s > 0 else [0.0] * len(vars_)
    parts = [min(total, math.floor(e + 1e-6)) for e in exact]
    while sum(parts) > total:
        parts[max(range(len(parts)), key=lambda i: parts[i] - exact[i])] -= 1
    rest = total - sum(parts)
    order = sorted(range(len(vars_)), key=lambda i: parts[i] - exact[i])
    for i in range(rest):
        parts[order[i % len(order)]] += 1
    for v, part in zip(vars_, parts, strict=True):
        hint[v] = part


def solve_valley(
    problem: Problem,
    params: SolverParams,
    *,
    seed: int = 0,
    deadline: float | None = None,
) -> PlacementResult:
    started = time.perf_counter()
    limit = params.time_limit_s
    if deadline is not None:
        limit = min(limit, deadline - time.monotonic())
    end = started + limit
    # the repairs at the end of packing (GPU re-pack, room for stranded work) are worth more
    # than the last milliseconds of CP-SAT: a slow machine may let them run this much late
    grace = min(0.1, 0.1 * limit)
    index = greedy.NodeIndex(problem.cluster)
    elig = eligibility_of(
        problem.scenario, problem.cluster, ((w.id, w.spec) for w in problem.workloads), params
    )
    open_ = [w for w in problem.workloads if not elig[w.id].final_reason]
    stats: dict[str, float] = {}
    if limit <= 0 or not open_:
        # no time for the solver (or nothing it could place): the greedy answer
        cluster = problem.cluster.copy()
        placements = _greedy_pass(problem, params, cluster, index, elig, open_)
        stats["fallback"] = 1.0 if open_ else 0.0
        status = SolveStatus.FALLBACK if open_ else SolveStatus.OPTIMAL
        return build_result(
            problem, params, placements, elig, cluster, status, started, None, stats
        )

    no_work = Problem(problem.scenario, problem.cluster, (), problem.hour, problem.month)
    model = build_model(problem, params, elig, index, evaluate(no_work, {}, params).objective)
    stats["model_variables"] = model.lm.size
    stats["model_constraints"] = len(model.lm.rows)
    stats["model_classes"] = len(model.classes)
    stats["build_seconds"] = time.perf_counter() - started

    # 1. the relaxation: a lower bound, and rounded and packed, a first complete answer
    t = time.perf_counter()
    # the LP's solution rounds and packs better than the MIP's below (its fractional wake
    # counts leave packing some slack), so it is the one rounded
    lp = model.lm.solve_relaxation(max(0.05, (end - t) * 0.5))
    stats["lp_seconds"] = time.perf_counter() - t
    bound = lp[0] if lp is not None else None
    # the bound: wake counts kept integer, a small MIP (HiGHS) much tighter than the LP. It
    # runs in a thread beside packing and CP-SAT (HiGHS releases the GIL) and is collected at
    # the end; it only ever raises the reported bound, never changes the placement
    wake = [ps.wake for ps in model.pools if ps.wake >= 0]
    mip_thread: _BoundThread | None = None
    if lp and wake and params.mip_bound:
        mip_thread = _BoundThread(
            model.lm, max(0.02, (end - time.perf_counter()) * 0.7), wake, 0.0005 * abs(lp[0])
        )
        mip_thread.start()
    cluster = problem.cluster.copy()
    t = time.perf_counter()
    if lp is not None:
        placements = pack(
            problem, params, cluster, index, elig, model, _round_hint(model, lp[1]), end + grace
        )
        status = SolveStatus.FEASIBLE
    else:
        placements = _greedy_pass(problem, params, cluster, index, elig, open_)
        status = SolveStatus.FALLBACK
        stats["fallback"] = 1.0
    stats["pack_seconds"] = time.perf_counter() - t

    # 2. CP-SAT, hinted with that answer, improves the integer decision while time remains
    hint = counts_of(model, problem.cluster, cluster, placements)
    hint_value = model.lm.value(hint)
    solver = cp_model.CpSolver()
    sp = solver.parameters
    # leave time to pack a better decision, should CP-SAT find one
    seconds_left = end - time.perf_counter() - stats["pack_seconds"]
    sp.copy_from(cpsat_parameters(params, seed, seconds_left, bound, model.lm.money_scale))
    if sp.max_time_in_seconds > 0.005:
        cp, xs = model.lm.build_cpsat()
        for v, h in zip(xs, hint, strict=True):
            cp.add_hint(v, h)
        code = solver.solve(cp)
        stats["cpsat_seconds"] = solver.wall_time
        if code in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            # CP-SAT's bound is for the integer model with costs rounded to micro-CNY: take
            # the rounding off before comparing it with the LP bound
            cp_bound = (
                solver.best_objective_bound / model.lm.money_scale
                + model.lm.constant
                - model.lm.rounding_slack()
            )
            if bound is None or cp_bound > bound:
                bound = cp_bound
            counts = [int(solver.value(v)) for v in xs]
            value = model.lm.value(counts)
            stats["cpsat_objective"] = value
            status = SolveStatus.OPTIMAL if code == cp_model.OPTIMAL else SolveStatus.FEASIBLE
            if value < hint_value - 1e-9:
                # a better decision: pack it too and keep the better of the two placements
                other = problem.cluster.copy()
                alt = pack(problem, params, other, index, elig, model, counts, end + grace)
                if (
                    evaluate(problem, alt, params).objective
                    < evaluate(problem, placements, params).objective
                ):
                    placements, cluster = alt, other
                    stats["cpsat_improved"] = 1.0
    if mip_thread is not None:
        mip = mip_thread.result(end)
        stats["mip_seconds"] = mip_thread.seconds
        if mip is not None and (bound is None or mip > bound):
            bound = mip
    return build_result(problem, params, placements, elig, cluster, status, started, bound, stats)


class _BoundThread(threading.Thread):
    """The MIP bound (``LinearModel.solve_relaxation`` with the wake counts integer), solved
    in the background."""

    def __init__(
        self, lm: LinearModel, time_limit_s: float, integer: Sequence[int], mip_gap: float
    ) -> None:
        super().__init__(name="valley-mip-bound", daemon=True)
        self.lm, self.time_limit_s, self.integer, self.mip_gap = lm, time_limit_s, integer, mip_gap
        self.value: float | None = None
        self.seconds = 0.0

    def run(self) -> None:
        t = time.perf_counter()
        out = self.lm.solve_relaxation(self.time_limit_s, self.integer, self.mip_gap + 1e-6)
        # only a MIP result counts here (solve_relaxation falls back to the LP when it fails)
        self.value = out[0] if out is not None else None
        self.seconds = time.perf_counter() - t

    def result(self, end: float) -> float | None:
        """The bound if the MIP finished by ``end`` (perf_counter), plus a little grace."""
        self.join(max(0.0, end - time.perf_counter()) + 0.02)
        return None if self.is_alive() else self.value


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


def counts_of(
    model: Model,
    before: Cluster,
    after: Cluster,
    placements: Mapping[str, tuple[ReplicaPlacement, ...]],
) -> list[int]:
    """The model's variables for a node-level placement (a feasible hint for CP-SAT)."""
    lm = model.lm
    values = [0] * lm.size
    pool_of_node = {name: int(after.node_pool[i]) for i, name in enumerate(after.node_names)}
    for c in model.classes:
        placed = [placements[w] for w in c.members if w in placements]
        values[c.k] = len(placed)
        for reps in placed:
            for rp in reps:
                values[c.x[pool_of_node[rp.node]]] += 1
            sites = {rp.site for rp in reps}
            for site in sites:
                if site in c.g:
                    values[c.g[site]] += 1
                if site in c.u:
                    values[c.u[site]] = 1
    woke = (after.replicas_on > 0) & (before.replicas_on == 0)
    for p in model.pools:
        if p.wake >= 0:
            values[p.wake] = int(woke[after.node_pool == p.index].sum())
    for h, idx, coef, hi in model.headroom:
        values[h] = max(0, sum(a * values[i] for i, a in zip(idx, coef, strict=True)) - hi)
    return values


# --------------------------------------------------------------------------- packing


def _node_capacity_counts(cluster: Cluster, nodes: np.ndarray, r: Resources) -> np.ndarray:
    """How many replicas of ``r`` each node can take now."""
    counts = np.minimum(
        cluster.free_cpu[nodes] // max(r.cpu_millis, 1),
        cluster.free_mem[nodes] // max(r.memory_mib, 1),
    )
    if r.gpus:
        counts = np.minimum(counts, (cluster.gpu_free[nodes] == GPU_MILLIS).sum(axis=1) // r.gpus)
    elif r.gpu_millis:
        g = cluster.gpu_free[nodes]
        counts = np.minimum(counts, np.where(g > 0, g // r.gpu_millis, 0).sum(axis=1))
    return np.maximum(counts, 0)


def _fill(
    cluster: Cluster, nodes: np.ndarray, r: Resources, want: int
) -> list[tuple[int, tuple[int, ...]]]:
    """Place up to ``want`` replicas of ``r`` on ``nodes``: powered nodes first, fullest first
    (best fit), then as few powered-down nodes as possible. Returns (node, gpus) per replica."""
    if want <= 0 or not len(nodes):
        return []
    cnt = _node_capacity_counts(cluster, nodes, r)
    ok = cnt > 0
    nodes, cnt = nodes[ok], cnt[ok]
    if not len(nodes):
        return []
    awake = cluster.replicas_on[nodes] > 0
    # fuller powered nodes first; then empty nodes in index order
    fullness = 1.0 - cluster.free_cpu[nodes] / cluster.cap_cpu[nodes]
    order = np.lexsort((nodes, -fullness, ~awake))
    nodes, cnt = nodes[order], cnt[order]
    out: list[tuple[int, tuple[int, ...]]] = []
    for node, c in zip(nodes.tolist(), cnt.tolist(), strict=True):
        for _ in range(min(c, want - len(out))):
            if not cluster.fits(node, r):
                break
            out.append((node, cluster.allocate(node, r)))
        if len(out) >= want:
            break
    return out


def _size_key(spec: WorkloadSpec, cluster: Cluster, pool: int) -> float:
    node = cluster.pools[pool].node
    r = spec.resources
    share = max(r.cpu_millis / node.cpu_millis, r.memory_mib / node.memory_mib)
    if node.gpus:
        share = max(share, r.gpu_demand_millis / (node.gpus * GPU_MILLIS))
    return share


def _pack_pool(
    cluster: Cluster, nodes: np.ndarray, shapes: Sequence[Resources], counts: Sequence[int]
) -> list[list[tuple[int, tuple[int, ...]]]]:
    """Pack replicas of several shapes onto the nodes of one pool, node by node: powered nodes
    first (fullest first), then powered-down ones. On each node, the next replica is the shape
    that best fills the node's free vector, each resource weighted by how much demand is still
    to place in it, so CPU-heavy and memory-heavy replicas share nodes instead of stranding
    capacity (on a 10k-replica mix this packs within 2% of the per-resource lower bound).
    Returns, per shape, the (node, gpus) of each replica placed."""
    out: list[list[tuple[int, tuple[int, ...]]]] = [[] for _ in shapes]
    left = np.asarray(counts, dtype=np.int64)
    if not len(nodes) or not left.sum():
        return out
    pool = cluster.pool_of(int(nodes[0]))
    cap = pool.node
    demand = np.asarray(
        [[r.cpu_millis, r.memory_mib, r.gpus, r.gpu_millis] for r in shapes], dtype=np.int64
    )
    gpu_total = max(cap.gpus * GPU_MILLIS, 1)
    norm = np.stack(
        [
            demand[:, 0] / cap.cpu_millis,
            demand[:, 1] / cap.memory_mib,
            (demand[:, 2] * GPU_MILLIS + demand[:, 3]) / gpu_total,
        ],
        axis=1,
    )
    size = norm.max(axis=1)
    norm_sq = norm * norm
    # the demand still to place, per dimension (kept up to date as replicas are placed)
    remaining = (norm * left[:, None]).sum(axis=0)
    has_gpus = cap.gpus > 0
    avail = np.zeros(4, dtype=np.int64)
    awake = cluster.replicas_on[nodes] > 0
    fullness = 1.0 - cluster.free_cpu[nodes] / cluster.cap_cpu[nodes]
    order = nodes[np.lexsort((nodes, -fullness, ~awake))]
    for node in order.tolist():
        while True:
            free_cpu = int(cluster.free_cpu[node])
            free_mem = int(cluster.free_mem[node])
            avail[0], avail[1] = free_cpu, free_mem
            gpu_free_share = 0.0
            if has_gpus:
                g = cluster.gpu_free[node]
                avail[2] = int((g == GPU_MILLIS).sum())
                avail[3] = int(g.max())
                gpu_free_share = float(g[g > 0].sum()) / gpu_total
            fit = (left > 0) & (demand <= avail).all(axis=1)
            if not fit.any():
                break
            # weight each dimension by the demand still to place in it, and prefer the shape
            # that leaves the free vector closest to zero: max 2 d.f - d.d (weighted)
            weight = remaining / max(float(remaining.sum()), 1e-12)
            free_w = np.array(
                [
                    2.0 * free_cpu / cap.cpu_millis * weight[0],
                    2.0 * free_mem / cap.memory_mib * weight[1],
                    2.0 * gpu_free_share * weight[2],
                ]
            )
            score = norm @ free_w - norm_sq @ weight + 1e-9 * size
            score[~fit] = -np.inf
            t = int(np.argmax(score))
            # place half of what still fits of that shape at once, then choose again: as good
            # as one at a time on the mixes measured, with half the steps
            r = shapes[t]
            fits = min(free_cpu // max(r.cpu_millis, 1), free_mem // max(r.memory_mib, 1))
            placed = 0
            for _ in range(max(1, min(int(left[t]), fits // 2))):
                if not cluster.fits(node, r):
                    break
                out[t].append((node, cluster.allocate(node, r)))
                placed += 1
            left[t] -= placed
            remaining -= placed * norm[t]
        if not left.sum():
            break
    return out


def pack(
    problem: Problem,
    params: SolverParams,
    cluster: Cluster,
    index: greedy.NodeIndex,
    elig: Mapping[str, Eligibility],
    model: Model,
    counts: Sequence[int],
    deadline: float | None = None,
) -> dict[str, tuple[ReplicaPlacement, ...]]:
    """Put the model's counts onto concrete nodes of ``cluster`` (changed in place).
    ``deadline`` (``time.perf_counter()``) bounds the optional bin-packing search."""
    specs = {w.id: w.spec for w in problem.workloads}
    awake_before = cluster.replicas_on > 0
    # per workload, the pools its replicas go to (a list, one entry per replica)
    plan: dict[str, list[int]] = {}
    for c in model.classes:
        k = counts[c.k]
        chosen = c.members[:k]
        n = c.spec.replica_count
        if c.spec.topology == Topology.GANG:
            # distribute per site: replicas of the site's pools, n per workload
            it = iter(chosen)
            for site, gv in c.g.items():
                slots = [p for p in c.elig.pools_by_site[site] for _ in range(counts[c.x[p]])]
                for j in range(counts[gv]):
                    plan[next(it)] = slots[j * n : (j + 1) * n]
        else:
            slots = [p for p in c.x for _ in range(counts[c.x[p]])]
            for j, wid in enumerate(chosen):
                plan[wid] = slots[j * n : (j + 1) * n]

    # pack pool by pool, GPU pools first, mixing shapes on each node
    demand: dict[int, dict[str, int]] = defaultdict(dict)  # pool -> wid -> replicas
    for wid, pools in plan.items():
        for p in pools:
            demand[p][wid] = demand[p].get(wid, 0) + 1
    got: dict[str, list[tuple[int, tuple[int, ...]]]] = defaultdict(list)
    short: dict[str, int] = defaultdict(int)

    def group(wid: str) -> tuple[bool, int]:
        """Packing order: replicas with no other site to go to before those that could move,
        higher priority first, so that a shortfall in a full pool hits what costs least."""
        spec = specs[wid]
        pinned = len(elig[wid].sites) == 1 or spec.topology in (Topology.GANG, Topology.SPREAD)
        return (not pinned, -spec.priority)

    spare = {ps.index: ps.empty_nodes - counts[ps.wake] for ps in model.pools if ps.wake >= 0}
    for p in sorted(demand, key=lambda p: (cluster.pools[p].node.gpus == 0, p)):
        groups: dict[tuple[bool, int], list[str]] = defaultdict(list)
        # a pool with nodes to spare packs all its replicas together (tighter); a full one
        # packs group by group
        full = spare.get(p, 0) <= max(2, len(index.by_pool[p]) // 20)
        for wid in demand[p]:
            groups[group(wid) if full else (False, 0)].append(wid)
        for key in sorted(groups):
            by_shape: dict[Resources, list[tuple[str, int]]] = defaultdict(list)
            # within a shape, larger workloads first: a shortfall drops the fewest replicas
            for wid in sorted(groups[key], key=lambda w: -specs[w].replica_count):
                by_shape[specs[wid].resources].append((wid, demand[p][wid]))
            shapes = list(by_shape)
            counts = [sum(m for _, m in by_shape[r]) for r in shapes]
            taken = _pack_pool(cluster, index.by_pool[p], shapes, counts)
            for r, placed in zip(shapes, taken, strict=True):
                pos = 0
                for wid, m in by_shape[r]:
                    mine = placed[pos : pos + m]
                    pos += len(mine)
                    got[wid].extend(mine)
                    short[wid] += m - len(mine)

    # repair: replicas that did not fit go to another eligible pool (same site for GANG)
    kept: dict[str, list[tuple[int, tuple[int, ...]]]] = {}
    for wid in plan:
        spec = specs[wid]
        r = spec.resources
        missing = short.get(wid, 0)
        if missing:
            e = elig[wid]
            if spec.topology == Topology.GANG:
                site = (
                    cluster.site_of(got[wid][0][0]) if got[wid] else next(iter(s for s in e.sites))
                )
                alt = e.pools_by_site[site]
            else:
                alt = e.pools
            more = _fill(cluster, index.nodes(tuple(alt)), r, missing)
            got[wid].extend(more)
            missing -= len(more)
        if missing or not _topology_ok(spec, cluster, got[wid]):
            for node, gpus in got[wid]:
                cluster.release(node, r, gpus)
            continue
        kept[wid] = got[wid]

    _consolidate(cluster, index, specs, kept, awake_before)
    _repack_gpu_pools(cluster, index, specs, kept, awake_before, deadline, elig)
    placements = {
        wid: _to_placements(problem, cluster, specs[wid], nodes) for wid, nodes in kept.items()
    }

    # leftovers: workloads the model left out or packing failed, greedily, cheapest site first
    placed_or_final = set(placements) | {w.id for w in problem.workloads if elig[w.id].final_reason}
    rest = [w for w in problem.workloads if w.id not in placed_or_final]
    placements.update(_greedy_pass(problem, params, cluster, index, elig, rest))
    rest = [w for w in rest if w.id not in placements]
    if rest:
        _make_room(problem, params, cluster, index, elig, placements, rest, deadline)
    if problem.gpu_target:
        _refit_gpu_work(problem, cluster, index, elig, placements, deadline)
    return placements


# scorers by target workload: a scorer keeps per-node results between solves
_SCORERS: dict[tuple[RequestType, ...], FragmentationScorer] = {}


def _scorer(target: tuple[RequestType, ...]) -> FragmentationScorer:
    scorer = _SCORERS.get(target)
    if scorer is None:
        if len(_SCORERS) >= 4:
            _SCORERS.pop(next(iter(_SCORERS)))
        scorer = _SCORERS[target] = FragmentationScorer(target, mode="fill+fgd")
    return scorer


def _refit_gpu_work(
    problem: Problem,
    cluster: Cluster,
    index: greedy.NodeIndex,
    elig: Mapping[str, Eligibility],
    placements: dict[str, tuple[ReplicaPlacement, ...]],
    deadline: float | None = None,
) -> None:
    """Place this cycle's GPU work again, replica by replica in arrival order, each on the node
    (and GPU) of its site where the expected fragmentation of the GPUs grows least (FGD with
    the problem's target workload). Sites stay as decided, so SLOs, GANG and SPREAD hold. If
    any replica finds no room, or ``deadline`` (``time.perf_counter()``) passes, the placement
    is left as it was. Changes ``cluster`` and ``placements`` in place."""
    specs = {w.id: w.spec for w in problem.workloads}
    gpu_work = [
        w.id for w in problem.workloads if w.id in placements and specs[w.id].resources.wants_gpu
    ]
    if not gpu_work:
        return
    scorer = _scorer(problem.gpu_target)
    for wid in gpu_work:
        for rp in placements[wid]:
            cluster.release(cluster.index[rp.node], specs[wid].resources, rp.gpu_indices)
    new: dict[str, tuple[ReplicaPlacement, ...]] = {}
    taken: list[tuple[int, Resources, tuple[int, ...]]] = []
    ok = True
    for wid in gpu_work:
        if deadline is not None and time.perf_counter() > deadline:
            ok = False
            break
        r = specs[wid].resources
        reps = []
        for rp in placements[wid]:
            nodes = index.nodes(elig[wid].pools_by_site[rp.site])
            nodes = nodes[cluster.fit_mask(r, nodes)]
            if not len(nodes):
                ok = False
                break
            growth, share_gpu = scorer.best_placement(cluster, nodes, r)
            k = int(np.argmin(growth))
            node = int(nodes[k])
            gpus = cluster.allocate(node, r, scorer.gpus_for(cluster, node, r, int(share_gpu[k])))
            taken.append((node, r, gpus))
            reps.append(
                ReplicaPlacement(rp.replica, rp.site, cluster.node_names[node], rp.latency_ms, gpus)
            )
        if not ok:
            break
        new[wid] = tuple(reps)
    if not ok:
        for node, r, gpus in reversed(taken):
            cluster.release(node, r, gpus)
        for wid in gpu_work:
            for rp in placements[wid]:
                cluster.allocate(cluster.index[rp.node], specs[wid].resources, rp.gpu_indices)
        return
    placements.update(new)


def _replicas_by_node(
    got: Mapping[str, Sequence[tuple[int, tuple[int, ...]]]],
) -> dict[int, list[tuple[str, int]]]:
    """Per node, the (workload, replica slot) pairs of ``got`` placed on it."""
    on_node: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for wid, slots in got.items():
        for i, (node, _) in enumerate(slots):
            on_node[node].append((wid, i))
    return on_node


def _consolidate(
    cluster: Cluster,
    index: greedy.NodeIndex,
    specs: Mapping[str, WorkloadSpec],
    got: dict[str, list[tuple[int, tuple[int, ...]]]],
    awake_before: np.ndarray,
    max_failures: int = 3,
) -> None:
    """Power nodes down again: move every replica of a node woken in this cycle onto other
    powered nodes of its pool, emptiest woken node first, while that succeeds. Moves stay
    inside the pool, so costs other than the node's idle power, SLOs and topology are unchanged.
    Changes ``cluster`` and ``got`` in place."""
    on_node = _replicas_by_node(got)
    for pool_nodes in index.by_pool:
        woken = pool_nodes[(cluster.replicas_on[pool_nodes] > 0) & ~awake_before[pool_nodes]]
        if len(woken) < 2:
            continue
        used = 1.0 - cluster.free_cpu[woken] / cluster.cap_cpu[woken]
        failures = 0
        for node in woken[np.argsort(used, kind="stable")].tolist():
            if failures >= max_failures:
                break
            moves: list[tuple[str, int, int, tuple[int, ...]]] = []
            items = sorted(on_node[node], key=lambda it: -specs[it[0]].resources.cpu_millis)
            for wid, i in items:
                r = specs[wid].resources
                cluster.release(node, r, got[wid][i][1])
                targets = pool_nodes[(cluster.replicas_on[pool_nodes] > 0) & (pool_nodes != node)]
                targets = targets[cluster.fit_mask(r, targets)]
                if not len(targets):
                    cluster.allocate(node, r, got[wid][i][1])
                    break
                best = int(targets[int(np.argmin(greedy.best_fit(cluster, targets, r)))])
                moves.append((wid, i, best, cluster.allocate(best, r)))
            if len(moves) < len(items):
                # undo: the node stays powered
                for wid, i, best, gpus in reversed(moves):
                    r = specs[wid].resources
                    cluster.release(best, r, gpus)
                    cluster.allocate(node, r, got[wid][i][1])
                failures += 1
                continue
            for wid, i, best, gpus in moves:
                got[wid][i] = (best, gpus)
                on_node[best].append((wid, i))
            on_node[node] = []


# bin packing of a GPU pool's woken nodes: at most this many items, at most this long
REPACK_MAX_ITEMS = 1500
REPACK_TIME_S = 0.1


@dataclass
class _Items:
    """Vector bin packing items built from replicas: a whole-GPU replica alone, or the
    fractional shares grouped into one physical GPU (first fit decreasing by share)."""

    vectors: list[tuple[int, int, int]] = field(default_factory=list)
    groups: list[list[tuple[str, int]]] = field(default_factory=list)
    is_unit: list[bool] = field(default_factory=list)

    @classmethod
    def of(cls, reps: Sequence[tuple[str, int]], specs: Mapping[str, WorkloadSpec]) -> _Items:
        out = cls()
        frac = []
        for wid, i in reps:
            r = specs[wid].resources
            if r.gpu_millis:
                frac.append((wid, i))
            else:
                out.add([(wid, i)], (r.cpu_millis, r.memory_mib, r.gpus), False)
        frac.sort(key=lambda it: (-specs[it[0]].resources.gpu_millis, it))
        units: list[list[int]] = []  # per GPU: [millis, item]
        for wid, i in frac:
            r = specs[wid].resources
            for u in units:
                if u[0] + r.gpu_millis <= GPU_MILLIS:
                    u[0] += r.gpu_millis
                    cpu, mem, g = out.vectors[u[1]]
                    out.vectors[u[1]] = (cpu + r.cpu_millis, mem + r.memory_mib, g)
                    out.groups[u[1]].append((wid, i))
                    break
            else:
                units.append([r.gpu_millis, len(out.vectors)])
                out.add([(wid, i)], (r.cpu_millis, r.memory_mib, 1), True)
        return out

    def add(self, group: list[tuple[str, int]], vector: tuple[int, int, int], unit: bool) -> None:
        self.groups.append(group)
        self.vectors.append(vector)
        self.is_unit.append(unit)

    def array(self, idx: Sequence[int] | None = None) -> np.ndarray:
        rows = self.vectors if idx is None else [self.vectors[k] for k in idx]
        return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


def _interchangeable_gpu_pools(cluster: Cluster) -> list[list[int]]:
    """GPU pools grouped per site by identical node shape and power model (they differ at
    most in GPU model): a replica allowed on several of them costs the same on each."""
    groups: dict[tuple[object, ...], list[int]] = defaultdict(list)
    for pi, pool in enumerate(cluster.pools):
        if pool.node.gpus:
            key = (pool.site, pool.node, pool.idle_watts, pool.max_watts, pool.gpu_watts)
            groups[key].append(pi)
    return list(groups.values())


def _repack_gpu_pools(
    cluster: Cluster,
    index: greedy.NodeIndex,
    specs: Mapping[str, WorkloadSpec],
    got: dict[str, list[tuple[int, tuple[int, ...]]]],
    awake_before: np.ndarray,
    deadline: float | None,
    elig: Mapping[str, Eligibility] | None = None,
) -> None:
    """Pack the replicas on the GPU nodes woken this cycle again, as a vector bin packing
    (``binpack.min_bins``), and keep the result when it needs fewer nodes. GPU nodes are few
    and expensive to keep powered (1.5 kW idle), and packing by hand strands GPUs. An item is
    (cores, memory, GPUs) for a whole-GPU replica or for one GPU's group of fractional shares
    (``_Items``), so any packing of the items is a valid placement. Pools of a site that
    differ only in GPU model are packed together: the replicas only one of them may take
    first, each pool on its own, then the replicas any of them may take, into the room left
    and then into as few more nodes as possible. Replicas stay in their site, on pools they
    are allowed, at the same cost but for idle power. Changes ``cluster`` and ``got`` in
    place."""
    on_node = _replicas_by_node(got)
    for group in _interchangeable_gpu_pools(cluster):
        cap = cluster.pools[group[0]].node
        capacity = np.asarray([cap.cpu_millis, cap.memory_mib, cap.gpus], dtype=np.int64)
        woken = {
            p: index.by_pool[p][
                (cluster.replicas_on[index.by_pool[p]] > 0) & ~awake_before[index.by_pool[p]]
            ]
            for p in group
        }
        n_woken = sum(len(w) for w in woken.values())
        if n_woken < 2:
            continue
        reps_of = {p: [it for node in woken[p].tolist() for it in on_node[node]] for p in group}
        if sum(len(r) for r in reps_of.values()) > REPACK_MAX_ITEMS:
            continue
        # per pool, the replicas only it may take; the others may go to any pool of the group
        pinned: dict[int, list[tuple[str, int]]] = {p: [] for p in group}
        free: list[tuple[str, int]] = []
        for p in group:
            for wid, i in reps_of[p]:
                allowed = set(elig[wid].pools) if elig is not None else {p}
                (free if len(group) > 1 and set(group) <= allowed else pinned[p]).append((wid, i))

        def limit() -> float:
            left = REPACK_TIME_S if deadline is None else deadline - time.perf_counter()
            return min(REPACK_TIME_S, left)

        # bins: (pool, or -1 for any pool of the group; the items it holds); pinned first
        bins: list[tuple[int, list[tuple[_Items, int]]]] = []
        for p in group:
            items = _Items.of(pinned[p], specs)
            if not items.vectors:
                continue
            if limit() <= 0.005:
                return
            res = min_bins(items.array(), capacity, time_limit_s=limit())
            start = len(bins)
            bins.extend((p, []) for _ in range(res.bins))
            for k, b in enumerate(res.assignment.tolist()):
                bins[start + b][1].append((items, k))
        if free:
            items = _Items.of(free, specs)
            used = [
                np.asarray([it.vectors[k] for it, k in held], dtype=np.int64).sum(axis=0)
                for _, held in bins
            ]
            # first fit decreasing into the room the pinned replicas left
            order = sorted(
                range(len(items.vectors)),
                key=lambda k: (
                    -sum(v / c for v, c in zip(items.vectors[k], capacity.tolist(), strict=True))
                ),
            )
            rest: list[int] = []
            for k in order:
                v = np.asarray(items.vectors[k], dtype=np.int64)
                for b, u in enumerate(used):
                    if (u + v <= capacity).all():
                        used[b] = u + v
                        bins[b][1].append((items, k))
                        break
                else:
                    rest.append(k)
            if rest:
                if limit() <= 0.005:
                    return
                res = min_bins(items.array(rest), capacity, time_limit_s=limit())
                start = len(bins)
                bins.extend((-1, []) for _ in range(res.bins))
                for k, b in zip(rest, res.assignment.tolist(), strict=True):
                    bins[start + b][1].append((items, k))
        if len(bins) >= n_woken:
            continue
        # nodes: per pool, its woken nodes first, then nodes empty before this cycle
        spare = {
            p: [
                *sorted(woken[p].tolist()),
                *[
                    n
                    for n in index.by_pool[p].tolist()
                    if cluster.replicas_on[n] == 0 and not awake_before[n]
                ],
            ]
            for p in group
        }
        node_of: list[int] = []
        for p, _ in bins:
            if p < 0:  # the first pool of the group with a node to spare
                p = next((q for q in group if spare[q]), group[0])
            if not spare[p]:
                break
            node_of.append(spare[p].pop(0))
        if len(node_of) < len(bins):
            continue
        for p in group:
            for wid, i in reps_of[p]:
                node, gpus = got[wid][i]
                cluster.release(node, specs[wid].resources, gpus)
        for node, (_, held) in zip(node_of, bins, strict=True):
            next_gpu = 0
            for items, k in held:
                if items.is_unit[k]:
                    for wid, i in items.groups[k]:
                        got[wid][i] = (
                            node,
                            cluster.allocate(node, specs[wid].resources, (next_gpu,)),
                        )
                    next_gpu += 1
                else:
                    ((wid, i),) = items.groups[k]
                    r = specs[wid].resources
                    gs = tuple(range(next_gpu, next_gpu + r.gpus))
                    next_gpu += r.gpus
                    got[wid][i] = (node, cluster.allocate(node, r, gs))


MAKE_ROOM_MAX_MOVES = 500


def _make_room(
    problem: Problem,
    params: SolverParams,
    cluster: Cluster,
    index: greedy.NodeIndex,
    elig: Mapping[str, Eligibility],
    placements: dict[str, tuple[ReplicaPlacement, ...]],
    rest: Sequence[PendingWorkload],
    deadline: float | None,
) -> None:
    """Place workloads that found no node although their pool has the capacity in sum,
    stranded over nodes (CPU free where memory is not, and the other way round): move one
    replica placed this cycle from a node that nearly fits to another powered node of the
    same pool where it fits, then place. Moves stay in the pool and on powered nodes, so SLOs,
    topology and costs stay as they were. Higher priority first. Changes ``cluster`` and
    ``placements`` in place."""
    specs = {w.id: w.spec for w in problem.workloads}
    on_node: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for wid, reps in placements.items():
        if specs[wid].resources.wants_gpu:
            continue  # CPU-only replicas move (no GPU indices to redo)
        for i, rp in enumerate(reps):
            on_node[cluster.index[rp.node]].append((wid, i))
    moves = 0

    def move(wid: str, i: int, a: int, b: int, *, allocate: bool = True) -> None:
        if allocate:
            x = specs[wid].resources
            cluster.release(a, x, ())
            cluster.allocate(b, x, ())
        on_node[a].remove((wid, i))
        on_node[b].append((wid, i))
        reps = list(placements[wid])
        reps[i] = replace(reps[i], node=cluster.node_names[b])
        placements[wid] = tuple(reps)

    def room_for(r: Resources, pools: Sequence[int]) -> bool:
        """A move, or a swap of two replicas, that frees a node of ``pools`` for ``r``; False
        if none was found."""
        nonlocal moves
        for pi in pools:
            nodes = index.by_pool[pi]
            awake = nodes[cluster.replicas_on[nodes] > 0]
            short_cpu = np.maximum(0, r.cpu_millis - cluster.free_cpu[awake])
            short_mem = np.maximum(0, r.memory_mib - cluster.free_mem[awake])
            # nodes that nearly fit first
            need = short_cpu / cluster.cap_cpu[awake] + short_mem / cluster.cap_mem[awake]
            candidates = np.argsort(need, kind="stable")[:200].tolist()
            # the movable replicas of the pool: node, cores, memory
            movable = [(n, it) for n in awake.tolist() for it in on_node.get(n, ())]
            if not movable:
                continue
            y_node = np.asarray([n for n, _ in movable], dtype=np.int64)
            y_cpu = np.asarray(
                [specs[it[0]].resources.cpu_millis for _, it in movable], dtype=np.int64
            )
            y_mem = np.asarray(
                [specs[it[0]].resources.memory_mib for _, it in movable], dtype=np.int64
            )
            for k in candidates:
                a = int(awake[k])
                for wid, i in list(on_node.get(a, ())):
                    x = specs[wid].resources
                    if x.cpu_millis < short_cpu[k] or x.memory_mib < short_mem[k]:
                        continue
                    # a move: x to another powered node where it fits
                    targets = awake[(awake != a) & cluster.fit_mask(x, awake)]
                    if len(targets):
                        b = int(targets[int(np.argmin(greedy.best_fit(cluster, targets, x)))])
                        move(wid, i, a, b)
                        moves += 1
                        return True
                    # a swap: x with a replica y of node b, so that b still holds x and a
                    # then fits r
                    fb_cpu, fb_mem = cluster.free_cpu[y_node], cluster.free_mem[y_node]
                    fa_cpu, fa_mem = int(cluster.free_cpu[a]), int(cluster.free_mem[a])
                    ok = (
                        (y_node != a)
                        & (y_cpu >= x.cpu_millis - fb_cpu)
                        & (y_mem >= x.memory_mib - fb_mem)
                        & (y_cpu <= fa_cpu + x.cpu_millis - r.cpu_millis)
                        & (y_mem <= fa_mem + x.memory_mib - r.memory_mib)
                    )
                    if not ok.any():
                        continue
                    j = int(np.flatnonzero(ok)[0])
                    b, (ywid, yi) = movable[j]
                    y = specs[ywid].resources
                    cluster.release(b, y, ())
                    cluster.release(a, x, ())
                    cluster.allocate(b, x, ())
                    cluster.allocate(a, y, ())
                    move(wid, i, a, b, allocate=False)
                    move(ywid, yi, b, a, allocate=False)
                    moves += 2
                    return True
        return False

    from scheduler.solver.heuristics import cheapest_site_order

    order = cheapest_site_order(problem, params)
    for w in sorted(rest, key=lambda w: -w.spec.priority):
        e = elig[w.id]
        for _ in range(w.spec.replica_count + 1):  # room for each replica, then place
            if moves >= MAKE_ROOM_MAX_MOVES or (
                deadline is not None and time.perf_counter() > deadline
            ):
                return
            placed = greedy.place_workload(
                cluster, problem.scenario, index, w.spec, e, greedy.best_fit, order
            )
            if placed is not None:
                placements[w.id] = placed
                break
            # room in the sites where no node fits a replica now, else anywhere it may go
            r = w.spec.resources
            full = [
                p
                for site in e.sites
                if not cluster.fit_mask(r, index.nodes(e.pools_by_site[site])).any()
                for p in e.pools_by_site[site]
            ]
            pools = full or list(e.pools)
            if not room_for(w.spec.resources, pools):
                break


def _topology_ok(
    spec: WorkloadSpec, cluster: Cluster, got: Sequence[tuple[int, tuple[int, ...]]]
) -> bool:
    sites = {cluster.site_of(node) for node, _ in got}
    if spec.topology == Topology.GANG:
        return len(sites) <= 1
    if spec.topology == Topology.SPREAD:
        return len(sites) >= spec.min_sites
    return True


def _to_placements(
    problem: Problem,
    cluster: Cluster,
    spec: WorkloadSpec,
    got: Sequence[tuple[int, tuple[int, ...]]],
) -> tuple[ReplicaPlacement, ...]:
    out = []
    for i, (node, gpus) in enumerate(sorted(got)):
        site = cluster.site_of(node)
        rtt = problem.scenario.site(site).latency_ms[spec.origin] if spec.origin else 0.0
        out.append(ReplicaPlacement(i, site, cluster.node_names[node], rtt, gpus))
    return tuple(out)


def _greedy_pass(
    problem: Problem,
    params: SolverParams,
    cluster: Cluster,
    index: greedy.NodeIndex,
    elig: Mapping[str, Eligibility],
    workloads: Sequence[PendingWorkload],
) -> dict[str, tuple[ReplicaPlacement, ...]]:
    """Greedy placement: higher priority first, cheapest site first, best fit within a site."""
    from scheduler.solver.heuristics import cheapest_site_order

    order = cheapest_site_order(problem, params)
    rank = np.asarray([order.index(s) for s in cluster.site_names], dtype=np.float64)

    def score(cl: Cluster, nodes: greedy.IntArray, r: Resources) -> greedy.FloatArray:
        awake = (cl.replicas_on[nodes] > 0).astype(np.float64)
        return rank[cl.node_site[nodes]] * 100.0 - awake * 10.0 + greedy.best_fit(cl, nodes, r)

    out = {}
    for w in sorted(workloads, key=lambda w: -w.spec.priority):
        placed = greedy.place_workload(
            cluster, problem.scenario, index, w.spec, elig[w.id], score, order
        )
        if placed is not None:
            out[w.id] = placed
    return out
