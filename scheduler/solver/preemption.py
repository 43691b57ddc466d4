"""Preemption: which lower-priority running workloads a stranded higher-priority workload
displaces, and where it goes then (``plan_preemptions``). Pure: nothing is changed but copies.

A *victim* is a running workload of strictly lower priority (equal priorities never preempt);
it always leaves whole (every replica, GANG or not: a workload is placed whole or not at all),
and a *preemptor* is placed whole or not at all. The planner places the preemptor's replicas
one at a time, each on the node that needs the least displaced to take it - first the fewest
victim replicas, then the lowest victim priority, then the cheapest victims per hour - under
every rule the solver keeps: eligibility (SLO, residency, GPU model), the per-node limit, a GANG
in one site (each site tried, the cheapest in victims kept), a SPREAD over ``min_sites``
sites, no blocked (cordoned) node, and the room that reservations need later, hour by hour as
the plan goes (``HourlyRoom``: what a victim frees later is the room of the hours it would have
run; a preemptor holds the hours of its own run). A victim whose replicas fit back where they
were once the preemptor is placed, now and in every hour it holds, is spared (the set is
minimal). Victims are whole workloads, so evicting one for one replica may free the room of the
next.

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
    Resources,
    Topology,
    Workload,
    WorkloadSpec,
)
from scheduler.solver import greedy
from scheduler.solver.filters import Eligibility, eligibility
from scheduler.solver.hourly_room import HourlyRoom, Span
from scheduler.solver.objective import cheapest_site_order, site_rates, workload_cost
from scheduler.solver.problem import PendingWorkload, Problem, SolverParams

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
    room: HourlyRoom  # what reservations leave later, after the attempt
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
    room = HourlyRoom(problem)
    out_nodes = {cluster.index[n] for n in blocked if n in cluster.index}
    rates = site_rates(problem)
    now = problem.now
    victims = {
        w.id: w
        for w in running
        if w.id not in protected and w.placements and not w.starts_after(now)
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
            t = _attempt(cluster, room, index, scorer, out_nodes, p.spec, elig, group, lower, end)
            if t is not None and (best is None or t.key < best.key):
                best = t
        if best is None:
            continue
        cluster, room = best.cluster, best.room  # the next preemptor sees what this one did
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
    base_room: HourlyRoom,
    index: greedy.NodeIndex,
    scorer: greedy.NodeScorer,
    out_nodes: set[int],
    spec: WorkloadSpec,
    elig: Eligibility,
    sites: Sequence[str],
    lower: dict[str, Workload],
    end: float,
) -> _Try | None:
    """Place every replica of ``spec`` in ``sites`` on a copy of ``base`` (and of
    ``base_room``), displacing from ``lower`` what each replica needs; None if some replica
    cannot be placed."""
    cluster, room = base.copy(), base_room.copy()
    span = room.span(spec.duration_s)  # the hours the preemptor holds
    r = spec.resources
    n = spec.replica_count
    on_node: dict[int, list[str]] = {}  # the victims with a replica on each node
    live = np.zeros(len(cluster), dtype=np.int64)  # how many of them are not evicted
    for wid, w in lower.items():
        for node in _nodes_of(cluster, w):
            on_node.setdefault(node, []).append(wid)
            live[node] += 1
    closed = np.zeros(len(cluster), dtype=np.bool_)  # blocked, or at the per-node limit
    closed[list(out_nodes)] = True
    evicted: list[str] = []
    placed: list[tuple[int, tuple[int, ...]]] = []
    per_node: dict[int, int] = {}
    # what each node needs displaced to take a replica, until the node changes
    known: dict[int, tuple[VictimKey, list[str]] | None] = {}
    for i in range(n):
        if time.monotonic() > end:
            return None
        used = {cluster.site_of(node) for node, _ in placed}
        allowed = list(sites)
        if spec.topology == Topology.SPREAD and spec.min_sites - len(used) >= n - i:
            allowed = [s for s in sites if s not in used]  # the rest must open new sites
        pools = tuple(pi for s in allowed for pi in elig.pools_by_site.get(s, ()))
        nodes = index.nodes(pools)
        nodes = nodes[~closed[nodes]]
        node, chosen = _cheapest_node(
            cluster, room, span, scorer, r, nodes, live, on_node, lower, set(evicted), known
        )
        if node < 0:
            return None
        known.pop(node, None)
        for wid in chosen:
            _evict(cluster, room, lower[wid])
            evicted.append(wid)
            for x in _nodes_of(cluster, lower[wid]):  # what those nodes need has changed
                live[x] -= 1
                known.pop(x, None)
        gpus = cluster.allocate(node, r, room.choose_gpus(cluster, node, r, span))
        room.take(node, r, gpus, span)
        placed.append((node, gpus))
        per_node[node] = per_node.get(node, 0) + 1
        closed[node] |= per_node[node] >= elig.per_node
    # spare the victims that fit back where they were, the dearest first
    for wid in sorted(evicted, key=lambda v: _victim_key(lower[v]), reverse=True):
        if _restore(cluster, room, lower[wid]):
            evicted.remove(wid)
    key = (
        sum(lower[v].spec.replica_count for v in evicted),
        sum(lower[v].spec.priority for v in evicted),
        sum(lower[v].cost.energy_cny_per_hour for v in evicted),
    )
    return _Try(cluster, room, placed, evicted, key)


def _cheapest_node(
    cluster: Cluster,
    room: HourlyRoom,
    span: Span,
    scorer: greedy.NodeScorer,
    r: Resources,
    nodes: npt.NDArray[np.int64],
    live: npt.NDArray[np.int64],
    on_node: dict[int, list[str]],
    lower: dict[str, Workload],
    gone: Collection[str],
    known: dict[int, tuple[VictimKey, list[str]] | None],
) -> tuple[int, list[str]]:
    """The node of ``nodes`` for one replica of ``r`` (holding the hours of ``span``)
    needing the least displaced, and whom (victims ``live`` on it); (-1, []) if none can take
    it even so. ``known`` keeps what each node needs, for the next replica (the caller forgets
    the nodes that change)."""
    if not len(nodes):
        return -1, []
    fit = nodes[room.fit_mask(cluster, r, nodes, span)]
    if len(fit):
        return int(fit[int(np.argmin(scorer(cluster, fit, r)))]), []
    # the nodes victims could make room on, those holding the fewest victims first
    reachable = nodes[live[nodes] > 0]
    reachable = reachable[np.argsort(live[reachable], kind="stable")][:MAX_NODES_PER_REPLICA]
    options: list[tuple[VictimKey, int, list[str]]] = []
    for node in reachable.tolist():
        if node not in known:
            known[node] = _victims_for(cluster, room, span, r, node, on_node[node], lower, gone)
        found = known[node]
        if found is not None:
            options.append((found[0], node, found[1]))
    if not options:
        return -1, []
    _, node, chosen = min(options, key=lambda o: (o[0], o[1]))
    return node, chosen


def _nodes_of(cluster: Cluster, w: Workload) -> set[int]:
    return {cluster.index[rp.node] for rp in w.placements if rp.node in cluster.index}


def _victims_for(
    cluster: Cluster,
    room: HourlyRoom,
    span: Span,
    r: Resources,
    node: int,
    on: list[str],
    lower: dict[str, Workload],
    gone: Collection[str],
) -> tuple[VictimKey, list[str]] | None:
    """The victims ``node`` needs displaced to take one replica of ``r`` (the cheapest first,
    until it fits) and their summed key; None if all of them would not do. ``on``: the victims
    on the node, those ``gone`` (evicted) included: they hold nothing there any more."""
    names = sorted((v for v in on if v not in gone), key=lambda v: (_victim_key(lower[v]), v))
    mark, room_mark = cluster.mark(), room.mark()
    chosen: list[str] = []
    ok = False
    for wid in names:
        _release_on(cluster, lower[wid], node)
        room.give(lower[wid], node)  # the hours it held there, no others
        chosen.append(wid)
        if room.fits(cluster, r, node, span):
            ok = True
            break
    cluster.undo_to(mark)
    cluster.forget(mark)
    room.undo_to(room_mark)
    if not ok:
        return None
    keys = [_victim_key(lower[v]) for v in chosen]
    return (sum(k[0] for k in keys), sum(k[1] for k in keys), sum(k[2] for k in keys)), chosen


def _victim_key(w: Workload) -> VictimKey:
    return (w.spec.replica_count, w.spec.priority, w.cost.energy_cny_per_hour)


def _release_on(cluster: Cluster, w: Workload, node: int) -> None:
    """Give back ``w``'s replicas on ``node`` (a trial: undone by the caller)."""
    for rp in w.placements:
        if cluster.index.get(rp.node) == node:
            cluster.release(node, w.spec.resources, rp.gpu_indices)


def _evict(cluster: Cluster, room: HourlyRoom, w: Workload) -> None:
    """Take ``w``'s replicas off, now and in the hours it holds later."""
    room.give(w)
    for rp in w.placements:
        if rp.node in cluster.index:
            cluster.release(cluster.index[rp.node], w.spec.resources, rp.gpu_indices)


def _restore(cluster: Cluster, room: HourlyRoom, w: Workload) -> bool:
    """Take ``w``'s replicas back where they were, all or none, now and in the hours it
    holds later (beside what the plan placed there, a reservation may not have its room);
    whether it could."""
    room_mark = room.mark()
    if not room.restore(w):
        return False
    mark = cluster.mark()
    try:
        for rp in w.placements:
            if rp.node in cluster.index:
                cluster.allocate(cluster.index[rp.node], w.spec.resources, rp.gpu_indices or None)
    except CapacityError:
        cluster.undo_to(mark)
        cluster.forget(mark)
        room.undo_to(room_mark)
        return False
    cluster.forget(mark)
    return True
