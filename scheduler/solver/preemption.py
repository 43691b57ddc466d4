"""Preemption: which lower-priority running workloads a stranded higher-priority workload
displaces, and where it goes then (``plan_preemptions``). Pure: nothing is changed but copies.

A *victim* is a running workload of strictly lower priority (equal priorities never preempt);
it always leaves whole (every replica, GANG or not: a workload is placed whole or not at all),
and a *preemptor* is placed whole or not at all. The planner places the preemptor's replicas
one at a time, each on the node that needs the least displaced to take it - first the fewest
victim replicas, then the lowest victim priority, then the cheapest victims per hour - under
every rule the solver keeps: eligibility (SLO, residency, GPU model), the per-node limit, a GANG
in one site (each site tried, the cheapest in victims kept), a SPREAD over ``min_sites``
sites, no blocked (cordoned) node, and the room that reservations need later. A victim whose
replicas fit back where they were once the preemptor is placed is spared (the set is minimal).
Victims are whole workloads, so evicting one for one replica may free the room of the next.

Protected workloads (the caller's no-loop rule: preempted twice within the hour) are never
victims; reservations that have not started hold no node now and are not victims either.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from scheduler.domain import (
    CapacityError,
    Cluster,
    Cost,
    ReplicaPlacement,
    Topology,
    Workload,
    WorkloadSpec,
)
from scheduler.solver import greedy
from scheduler.solver.filters import Eligibility, eligibility
from scheduler.solver.objective import cheapest_site_order, site_rates, workload_cost
from scheduler.solver.problem import PendingWorkload, Problem, SolverParams, held_later

# candidate nodes a replica's victims are worked out on (fewest victim replicas first): bounds
# the planner's time on a big cluster, and past a few hundred nodes the choice barely changes
MAX_NODES_PER_REPLICA = 256

# victims are chosen by (replicas, priority, cost per hour): the fewest replicas, then the
# lowest priority, then the cheapest
VictimKey = tuple[int, int, float]


@dataclass(frozen=True)
class Preemption:
    """One stranded workload placed by displacing ``victims`` (ids, in the order chosen)."""

    preemptor: str
    priority: int
    placements: tuple[ReplicaPlacement, ...]
    cost: Cost
    victims: tuple[str, ...]


@dataclass
class _Try:
    """One attempt at placing a preemptor on a copy of the cluster."""

    cluster: Cluster
    placed: list[tuple[int, tuple[int, ...]]]
    evicted: list[str]
    key: tuple[int, int, float]  # displaced replicas, summed priority, summed cost


def plan_preemptions(
    problem: Problem,
    params: SolverParams,
    stranded: Sequence[PendingWorkload],
    running: Sequence[Workload],
    protected: Collection[str] = (),
    blocked: Collection[str] = (),
    budget_s: float = 0.5,
) -> list[Preemption]:
    """The preemptions that place ``stranded`` workloads (highest priority first) by displacing
    ``running`` ones of lower priority on ``problem.cluster`` (not changed); ``protected`` ids
    are never displaced, ``blocked`` nodes take nothing new. A stranded workload that fits
    without displacing anything gets a preemption without victims. Planning stops after about
    ``budget_s`` seconds with what it has."""
    end = time.monotonic() + budget_s
    cluster = problem.cluster.copy()
    index = greedy.NodeIndex(cluster)
    order = cheapest_site_order(problem, params)
    scorer = greedy.site_ranked(order, cluster.site_names, greedy.awake_first(greedy.best_fit))
    held = held_later(problem)
    out_nodes = {cluster.index[n] for n in blocked if n in cluster.index}
    rates = site_rates(problem)
    now = problem.now
    victims = {
        w.id: w
        for w in running
        if w.id not in protected
        and w.placements
        and (now is None or w.placements[0].start_time is None or w.placements[0].start_time <= now)
    }
    out: list[Preemption] = []
    for p in sorted(stranded, key=lambda p: -p.spec.priority):
        if time.monotonic() > end:
            break
        elig = eligibility(problem.scenario, cluster, p.spec, params)
        if elig.final_reason or not elig.sites:
            continue
        lower = {wid: w for wid, w in victims.items() if w.spec.priority < p.spec.priority}
        sites = [s for s in order if s in elig.sites]
        groups = [[s] for s in sites] if p.spec.topology == Topology.GANG else [sites]
        best: _Try | None = None
        for group in groups:
            t = _attempt(cluster, index, scorer, held, out_nodes, p.spec, elig, group, lower, end)
            if t is not None and (best is None or t.key < best.key):
                best = t
        if best is None:
            continue
        cluster = best.cluster
        reps = tuple(
            greedy.placement(cluster, problem.scenario, p.spec, i, node, gpus)
            for i, (node, gpus) in enumerate(best.placed)
        )
        for wid in best.evicted:
            victims.pop(wid)
        cost = workload_cost(problem, p.spec, reps, rates)
        out.append(Preemption(p.id, p.spec.priority, reps, cost, tuple(best.evicted)))
    return out


def _attempt(
    base: Cluster,
    index: greedy.NodeIndex,
    scorer: greedy.NodeScorer,
    held: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]],
    out_nodes: set[int],
    spec: WorkloadSpec,
    elig: Eligibility,
    sites: Sequence[str],
    lower: dict[str, Workload],
    end: float,
) -> _Try | None:
    """Place every replica of ``spec`` in ``sites`` on a copy of ``base``, displacing from
    ``lower`` what each replica needs; None if some replica cannot be placed."""
    cluster = base.copy()
    r = spec.resources
    n = spec.replica_count
    on_node: dict[int, list[str]] = {}
    for wid, w in lower.items():
        for rp in w.placements:
            if rp.node in cluster.index:
                on_node.setdefault(cluster.index[rp.node], []).append(wid)
    evicted: list[str] = []
    placed: list[tuple[int, tuple[int, ...]]] = []
    per_node: dict[int, int] = {}
    for i in range(n):
        if time.monotonic() > end:
            return None
        used = {cluster.site_of(node) for node, _ in placed}
        allowed = list(sites)
        if spec.topology == Topology.SPREAD and spec.min_sites - len(used) >= n - i:
            allowed = [s for s in sites if s not in used]  # the rest must open new sites
        pools = tuple(pi for s in allowed for pi in elig.pools_by_site.get(s, ()))
        nodes = [
            int(x)
            for x in index.nodes(pools).tolist()
            if x not in out_nodes and per_node.get(int(x), 0) < elig.per_node
        ]
        node, chosen = _cheapest_node(cluster, scorer, held, spec, nodes, on_node, lower, evicted)
        if node < 0:
            return None
        for wid in chosen:
            _evict(cluster, lower[wid])
            evicted.append(wid)
        placed.append((node, cluster.allocate(node, r)))
        per_node[node] = per_node.get(node, 0) + 1
    # spare the victims that fit back where they were, the dearest first
    for wid in sorted(evicted, key=lambda v: _victim_key(lower[v]), reverse=True):
        if _restore(cluster, lower[wid]):
            evicted.remove(wid)
    key = (
        sum(lower[v].spec.replica_count for v in evicted),
        sum(lower[v].spec.priority for v in evicted),
        sum(lower[v].cost.energy_cny_per_hour for v in evicted),
    )
    return _Try(cluster, placed, evicted, key)


def _cheapest_node(
    cluster: Cluster,
    scorer: greedy.NodeScorer,
    held: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]],
    spec: WorkloadSpec,
    nodes: list[int],
    on_node: dict[int, list[str]],
    lower: dict[str, Workload],
    evicted: list[str],
) -> tuple[int, list[str]]:
    """The node for one replica of ``spec`` needing the least displaced, and whom (the
    victims not yet ``evicted``); (-1, []) if none can take it even so."""
    r = spec.resources
    if not nodes:
        return -1, []
    cand = np.asarray(nodes, dtype=np.int64)
    room = (cluster.free_cpu[cand] - held[0][cand] >= r.cpu_millis) & (
        cluster.free_mem[cand] - held[1][cand] >= r.memory_mib
    )
    fit = cand[cluster.fit_mask(r, cand) & room]
    if len(fit):
        return int(fit[int(np.argmin(scorer(cluster, fit, r)))]), []
    gone = set(evicted)
    options: list[tuple[tuple[int, int, float], int, list[str]]] = []
    # the nodes victims could make room on, those holding the fewest victim replicas first
    reachable = sorted(
        (len(on_node[x]), x) for x in nodes if any(v not in gone for v in on_node.get(x, ()))
    )
    for _, node in reachable[:MAX_NODES_PER_REPLICA]:
        names = sorted(
            {v for v in on_node[node] if v not in gone}, key=lambda v: (_victim_key(lower[v]), v)
        )
        mark = cluster.mark()
        chosen: list[str] = []
        ok = False
        for wid in names:
            _release_on(cluster, lower[wid], node)
            chosen.append(wid)
            if (
                cluster.fits(node, r)
                and cluster.free_cpu[node] - held[0][node] >= r.cpu_millis
                and cluster.free_mem[node] - held[1][node] >= r.memory_mib
            ):
                ok = True
                break
        cluster.undo_to(mark)
        cluster.forget(mark)
        if ok:
            keys = [_victim_key(lower[v]) for v in chosen]
            total = (sum(k[0] for k in keys), sum(k[1] for k in keys), sum(k[2] for k in keys))
            options.append((total, node, chosen))
    if not options:
        return -1, []
    _, node, chosen = min(options, key=lambda o: (o[0], o[1]))
    return node, chosen


def _victim_key(w: Workload) -> VictimKey:
    return (w.spec.replica_count, w.spec.priority, w.cost.energy_cny_per_hour)


def _release_on(cluster: Cluster, w: Workload, node: int) -> None:
    """Give back ``w``'s replicas on ``node`` (a trial: undone by the caller)."""
    for rp in w.placements:
        if cluster.index.get(rp.node) == node:
            cluster.release(node, w.spec.resources, rp.gpu_indices)


def _evict(cluster: Cluster, w: Workload) -> None:
    for rp in w.placements:
        if rp.node in cluster.index:
            cluster.release(cluster.index[rp.node], w.spec.resources, rp.gpu_indices)


def _restore(cluster: Cluster, w: Workload) -> bool:
    """Take ``w``'s replicas back where they were, all or none; whether it could."""
    mark = cluster.mark()
    try:
        for rp in w.placements:
            if rp.node in cluster.index:
                cluster.allocate(cluster.index[rp.node], w.spec.resources, rp.gpu_indices or None)
    except CapacityError:
        cluster.undo_to(mark)
        cluster.forget(mark)
        return False
    cluster.forget(mark)
    return True
