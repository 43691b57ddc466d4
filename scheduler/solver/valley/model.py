"""The aggregated model of one cycle: classes of identical workloads x pools of identical nodes.

Per class, the model decides how many workloads are placed and how many replicas go to each
pool; per pool, how many powered-down nodes to wake. It is exact in its objective and a
relaxation in its capacity (pool totals instead of per-node fit), so any relaxation of it gives
a valid lower bound on the objective of every node-level placement.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from scheduler.domain import (
    GPU_MILLIS,
    Cluster,
    ReplicaPlacement,
    Resources,
    Topology,
    WorkloadSpec,
    dynamic_watts,
)
from scheduler.solver.filters import Eligibility
from scheduler.solver.greedy import NodeIndex
from scheduler.solver.objective import (
    carbon_price,
    rates_over_runs,
    site_rates,
    spec_rates,
    unplaced_penalties,
)
from scheduler.solver.problem import Problem, SolverParams
from scheduler.solver.valley.linear import INF, LinearModel

# a row of the linear model: (variables, coefficients, lo, hi)
Row = tuple[list[int], list[int], float, float]

# pool capacity rows of the model. ``gpu_slots``: a whole GPU, or a share above half a GPU,
# takes a physical GPU no other such request can share, so their count is bounded by the GPUs
# with more than half free - a valid cut that the summed millis alone miss (two 0.8 shares do
# not fit one GPU)
RESOURCES = ("cpu_millis", "memory_mib", "gpus", "gpu_demand_millis", "gpu_slots")
HALF_GPU = GPU_MILLIS // 2


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
    placed_row: int = -1  # the row: replicas placed = replica_count x workloads placed
    gang_row: int = -1  # GANG: the row: workloads in a site summed = workloads placed
    # CNY/h a placed member pays at least for replicas sharing a rack (``Model.price_racks``)
    racks: float = 0.0


@dataclass
class PoolState:
    """What the model knows of a pool: free capacity on powered nodes, empty nodes to wake."""

    index: int
    site: str
    free_awake: dict[str, int]
    node_cap: dict[str, int]
    empty_nodes: int
    wake: int = -1  # model variable


@dataclass(frozen=True, slots=True)
class HeadroomRow:
    """A site's headroom: ``sum(coef * x) - h <= allowed`` with ``h`` the millicores above the
    target share of the site's CPU (only this cycle's share of it: see ``build_model``)."""

    h: int
    idx: list[int]
    coef: list[int]
    allowed: float


@dataclass
class Model:
    lm: LinearModel
    classes: list[WorkloadClass]
    pools: list[PoolState]
    headroom: list[HeadroomRow]
    # per-node limit rows not in the model yet (``add_violated`` adds those a solution breaks)
    lazy: list[Row] = field(default_factory=list)

    def price_racks(self) -> None:
        """Add to each class's cost of placing a workload the least its rack spread term
        can be (its replicas beyond the racks it may use at all): the bound stays a bound and
        counts what no placement avoids. Left out of the LP that the first answer rounds
        (costs this small only move it between equal optima), added for the MIP bound and
        CP-SAT; once."""
        for c in self.classes:
            if c.racks:
                self.lm.cost[c.k] += c.racks
                c.racks = 0.0

    def add_violated(self, x: Sequence[float]) -> int:
        """Add the rows of ``lazy`` that ``x`` breaks to the model; how many. Each is valid
        for every placement, so the model stays a relaxation with or without them."""
        keep: list[Row] = []
        added = 0
        for row in self.lazy:
            idx, coef, _, hi = row
            if sum(a * x[i] for i, a in zip(idx, coef, strict=True)) > hi + 1e-6:
                self.lm.rows.append(row)
                added += 1
            else:
                keep.append(row)
        self.lazy = keep
        return added

    @property
    def wake_vars(self) -> list[int]:
        return [p.wake for p in self.pools if p.wake >= 0]

    @property
    def bound_integers(self) -> list[int]:
        """The variables the MIP bound keeps integer: the wake counts, the workloads placed
        per class (a large workload is placed whole or not at all: the LP places a fraction
        of it and its bound misses the penalty of the rest) and the GANG and SPREAD site
        choices. Replica counts per pool stay continuous: that keeps the MIP small (on the
        10k mixes it solves faster than with the wake counts alone)."""
        out = self.wake_vars
        for c in self.classes:
            out.append(c.k)
            out += c.g.values()
            out += c.u.values()
        return out


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
        elig.per_node,
        round(penalty, 9),
        rtts if spec.is_service else (),
    )


def amounts(r: Resources) -> dict[str, int]:
    """A replica's demand in each of the model's capacity rows."""
    return {
        "cpu_millis": r.cpu_millis,
        "memory_mib": r.memory_mib,
        "gpus": r.gpus,
        "gpu_demand_millis": r.gpu_demand_millis,
        "gpu_slots": r.gpus + (1 if r.gpu_millis > HALF_GPU else 0),
    }


def _pool_states(cluster: Cluster, index: NodeIndex) -> list[PoolState]:
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


def _classes(
    problem: Problem,
    params: SolverParams,
    elig: Mapping[str, Eligibility],
    extra_key: Mapping[str, object] | None = None,
) -> list[WorkloadClass]:
    """Identical workloads grouped, in arrival order; those that can never fit left out.
    ``extra_key``: per workload id, what else must be equal for two to share a class."""
    scenario = problem.scenario
    penalties = unplaced_penalties(problem, params)
    by_key: dict[tuple[object, ...], WorkloadClass] = {}
    rtts_from: dict[str, tuple[float, ...]] = {}  # per origin, the RTT to each site
    for w in problem.workloads:
        e = elig[w.id]
        if e.final_reason:
            continue
        origin = w.spec.origin
        rtts = rtts_from.get(origin)
        if rtts is None:
            rtts = rtts_from[origin] = tuple(
                s.latency_ms[origin] if origin else 0.0 for s in scenario.sites
            )
        key = _class_key(w.spec, e, penalties[w.id], rtts)
        if extra_key is not None:
            key = (*key, extra_key.get(w.id))
        cls = by_key.get(key)
        if cls is None:
            by_key[key] = WorkloadClass(key, w.spec, [w.id], e, penalties[w.id])
        else:
            cls.members.append(w.id)
    return list(by_key.values())


def build_model(
    problem: Problem,
    params: SolverParams,
    elig: Mapping[str, Eligibility],
    index: NodeIndex,
    base_cost: float,
    extra_key: Mapping[str, object] | None = None,
) -> Model:
    """The model of ``problem``; ``base_cost`` is the objective with nothing placed;
    ``extra_key`` as for ``_classes``."""
    cluster = problem.cluster
    rates = site_rates(problem)
    cprice = carbon_price(problem, params)
    money_per_watt = {s: rates[s].money_per_it_watt(cprice) for s in problem.scenario.site_names}
    classes = _classes(problem, params, elig, extra_key)
    pools = _pool_states(cluster, index)
    lm = LinearModel(constant=base_cost)
    rack_counts = _RackCounts(cluster, index)
    # a class's replicas at the mean rates of their run where the problem is priced over runs,
    # as the objective counts them (``objective.run_priced``)
    runs = rates_over_runs(problem, cprice, (w.spec for w in problem.workloads))
    for ci, c in enumerate(classes):
        money = money_per_watt
        if runs is not None:
            over_run = spec_rates(problem, c.spec, rates, runs)
            money = {s: r.money_per_it_watt(cprice) for s, r in over_run.items()}
        _add_class(lm, problem, params, ci, c, money, rack_counts)
    # per pool, the model variable and the per-replica demand of every class that may use it
    users: dict[int, list[tuple[int, dict[str, int]]]] = {}
    for c in classes:
        need = amounts(c.spec.resources)
        for pi, v in c.x.items():
            users.setdefault(pi, []).append((v, need))
    for p in pools:
        if p.index in users:
            _add_pool_capacity(lm, cluster, users[p.index], p, money_per_watt[p.site])
    limits = _per_node_limit_rows(index, classes, pools)
    headroom = _add_headroom(lm, cluster, params, classes)
    return Model(lm, classes, pools, headroom, limits)


def _add_class(
    lm: LinearModel,
    problem: Problem,
    params: SolverParams,
    ci: int,
    c: WorkloadClass,
    money_per_watt: Mapping[str, float],
    rack_counts: _RackCounts,
) -> None:
    """A class's variables and rows."""
    spec = c.spec
    n = spec.replica_count
    count = len(c.members)
    # reward for placing (as a negative cost), the penalty of all members as a constant
    c.k = lm.var(f"k[{ci}]", 0, count, -c.penalty)
    c.racks = params.rack_spread_cny_per_replica_hour * _beyond_racks(rack_counts, c)
    lm.constant += c.penalty * count
    for site, site_pools in c.elig.pools_by_site.items():
        rtt = problem.scenario.site(site).latency_ms[spec.origin] if spec.origin else 0.0
        lat = params.latency_cny_per_ms_hour * rtt if spec.is_service else 0.0
        for pi in site_pools:
            pool = problem.cluster.pools[pi]
            unit = dynamic_watts(pool, spec.resources) * money_per_watt[site] + lat
            c.x[pi] = lm.var(f"x[{ci},{pi}]", 0, n * count, unit)
    # every replica of a placed workload is placed somewhere
    c.placed_row = len(lm.rows)
    lm.row([*c.x.values(), c.k], [1] * len(c.x) + [-n], 0, 0)
    if spec.topology == Topology.GANG:
        # g[s] workloads wholly in site s
        for site, site_pools in c.elig.pools_by_site.items():
            if not site_pools:
                continue
            c.g[site] = lm.var(f"g[{ci},{site}]", 0, count)
            lm.row([c.x[p] for p in site_pools] + [c.g[site]], [1] * len(site_pools) + [-n], 0, 0)
        c.gang_row = len(lm.rows)
        lm.row([*c.g.values(), c.k], [1] * len(c.g) + [-1], 0, 0)
    elif spec.topology == Topology.SPREAD:
        # u[s] = 1 only if site s holds a replica; at least min_sites sites when placed
        for site, site_pools in c.elig.pools_by_site.items():
            if not site_pools:
                continue
            c.u[site] = lm.var(f"u[{ci},{site}]", 0, 1)
            lm.row([c.u[site]] + [c.x[p] for p in site_pools], [1] + [-1] * len(site_pools), hi=0)
        lm.row([*c.u.values(), c.k], [1] * len(c.u) + [-spec.min_sites], lo=0)


class _RackCounts:
    """How many racks the nodes of some pools stand in (a node in none: a rack of its own),
    per set of pools asked for."""

    def __init__(self, cluster: Cluster, index: NodeIndex) -> None:
        self.racks = [frozenset(cluster.node_rack[nodes].tolist()) for nodes in index.by_pool]
        self.known: dict[tuple[int, ...], int] = {}

    def __call__(self, pools: tuple[int, ...]) -> int:
        if pools not in self.known:
            self.known[pools] = len(frozenset().union(*(self.racks[p] for p in pools)))
        return self.known[pools]


def _beyond_racks(rack_counts: _RackCounts, c: WorkloadClass) -> int:
    """The fewest replicas of one of the class's services that must share a rack: its
    replicas less the racks of the pools it may use (of one site for GANG)."""
    n = c.spec.replica_count
    if not c.spec.is_service or n < 2:
        return 0
    racks = [rack_counts(pools) for pools in c.elig.pools_by_site.values() if pools]
    most = max(racks, default=0) if c.spec.topology == Topology.GANG else sum(racks)
    return max(0, n - most)


def _add_pool_capacity(
    lm: LinearModel,
    cluster: Cluster,
    users: list[tuple[int, dict[str, int]]],
    p: PoolState,
    money_per_watt: float,
) -> None:
    """Pool capacity: demand <= free on powered nodes + capacity of the nodes woken."""
    pool = cluster.pools[p.index]
    p.wake = lm.var(f"wake[{p.index}]", 0, p.empty_nodes, pool.idle_watts * money_per_watt)
    for res in RESOURCES:
        idx: list[int] = []
        coef: list[int] = []
        for v, need in users:
            if need[res]:
                idx.append(v)
                coef.append(need[res])
        if not idx:
            continue
        idx.append(p.wake)
        coef.append(-p.node_cap[res])
        lm.row(idx, coef, hi=p.free_awake[res])


def _per_node_limit_rows(
    index: NodeIndex, classes: list[WorkloadClass], pools: list[PoolState]
) -> list[Row]:
    """A class whose workloads hold at most ``per_node`` replicas a node puts at most
    ``per_node x members`` replicas on each powered node of a pool: ``x <= per_node x members x
    (powered + wake)``. Valid for every placement that keeps the limit; it makes the bound pay
    for the nodes a spread service wakes. Most never bind (a pool many classes use has nodes
    enough): they are returned, not added, for the solve to add those a solution breaks (a
    row per limited class and pool slowed the LP 1.5x and the MIP bound 1.3x at 10k). None
    where the powered nodes alone hold all the class's replicas within the limit."""
    out: list[Row] = []
    for c in classes:
        limit = c.elig.per_node
        n = c.spec.replica_count
        if limit >= n:
            continue
        per = limit * len(c.members)
        for pi, v in c.x.items():
            p = pools[pi]
            powered = len(index.by_pool[pi]) - p.empty_nodes
            if limit * powered >= n:
                continue
            if p.wake < 0:
                out.append(([v], [1], -INF, per * powered))
            else:
                out.append(([v, p.wake], [1, -per], -INF, per * powered))
    return out


def _add_headroom(
    lm: LinearModel, cluster: Cluster, params: SolverParams, classes: list[WorkloadClass]
) -> list[HeadroomRow]:
    """CPU allocated above the target share of each site's capacity is penalised. The base
    cost already holds the penalty of what a site has above the target before this cycle, so
    the model counts only the growth: ``cost * (max(0, new - allowed) - max(0, -allowed))``.
    ``allowed`` stays fractional for the relaxations; CP-SAT's integer rows round it down,
    which may cost up to one millicore's penalty per site (``LinearModel.row_rounding``)."""
    cost = params.headroom_cny_per_core_hour / 1000.0  # per millicore-hour
    out: list[HeadroomRow] = []
    for si, site in enumerate(cluster.site_names):
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
        h = lm.var(f"headroom[{site}]", 0, 2 * cap + max(0.0, -allowed), cost)
        lm.row([*idx, h], [*coef, -1], hi=allowed)
        lm.constant -= cost * max(0.0, -allowed)
        lm.row_rounding += cost * (allowed - math.floor(allowed))
        out.append(HeadroomRow(h, idx, coef, allowed))
    return out


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
    for row in model.headroom:
        new = sum(a * values[i] for i, a in zip(row.idx, row.coef, strict=True))
        values[row.h] = max(0, new - math.floor(row.allowed))
    return values
