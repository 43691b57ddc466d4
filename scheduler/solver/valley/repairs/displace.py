"""Room for work that fits nowhere, made by moving replicas that may go elsewhere.

A pool can be full in sum although the model found room: a service spread over two sites has a
replica in E-Town, a workload of the site's CPU and GPU pools sits on a CPU node, and the
workload pinned to E-Town finds no node. ``make-room`` moves replicas within the pool; this
repair moves them anywhere their own rules allow - another pool, another site (a SPREAD workload
keeps its ``min_sites``, a GANG workload its site) - and then places the stranded workload. The
moves change costs (another site's energy and latency, a node woken), so each workload's moves
are kept only if the objective improves with it placed.

Where moving is not enough (a pool full of work that may be nowhere else), a second try may
also take out whole workloads whose unplaced penalties sum to less than the stranded one's -
a 38-replica GANG waits less well than one 16-core replica does - and the objective decides
again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from scheduler.domain import Resources, Topology
from scheduler.solver import greedy
from scheduler.solver.budget import TimeBudget
from scheduler.solver.filters import sites_for_a_move
from scheduler.solver.greedy import IntArray
from scheduler.solver.objective import cheapest_site_order, evaluate_state, unplaced_penalties
from scheduler.solver.valley.state import PackingState, ReplicaRef, Slot

# replica moves per solve, and nodes tried per replica of a stranded workload
MAX_MOVES = 2000
CANDIDATES = 40


class Displace:
    """Place stranded workloads, higher priority first, by moving other replicas out of the
    way (see the module docstring)."""

    name: ClassVar[str] = "displace"

    def __init__(self) -> None:
        self.moves = 0
        # the second try's: unplaced penalty per workload, and what it may still take out
        self._penalties: dict[str, float] = {}
        self._evict_budget = 0.0

    def supports(self, state: PackingState) -> bool:
        return any(not w.spec.resources.wants_gpu for w in state.open_workloads())

    def apply(self, state: PackingState, budget: TimeBudget) -> bool:
        never = {wid for wid, e in state.elig.items() if e.final_reason}
        order = cheapest_site_order(state.problem, state.params)
        scorer = greedy.site_ranked(
            order, state.cluster.site_names, greedy.awake_first(greedy.best_fit)
        )
        changed = False
        work = [w for w in state.open_workloads() if not w.spec.resources.wants_gpu]
        before = self._objective(state, never)  # then after each change kept
        self._penalties = unplaced_penalties(state.problem, state.params)
        for w in sorted(work, key=lambda w: -w.spec.priority):
            if self.moves >= MAX_MOVES or budget.expired(grace=True):
                break
            with state.transaction() as tx:
                moves = self.moves
                if not (
                    self._place(state, w.id, scorer, order)
                    or self._place_evicting(state, w.id, scorer, order)
                ):
                    continue  # (each try took back what it tried)
                after = self._objective(state, never)
                if after < before - 1e-9:
                    before, changed = after, True
                else:
                    self.moves = moves
                    tx.rollback()
        return changed

    @staticmethod
    def _objective(state: PackingState, never: set[str]) -> float:
        return evaluate_state(
            state.problem, state.cluster, state.placements(), state.params, never
        ).objective

    def _place(
        self, state: PackingState, wid: str, scorer: greedy.NodeScorer, order: Sequence[str]
    ) -> bool:
        """Place ``wid`` whole, its topology held, making room where no node fits a replica;
        all or nothing."""
        e = state.elig[wid]
        sites = [s for s in order if e.pools_by_site.get(s)]
        with state.transaction() as tx:
            slots = self._slots(state, wid, sites, scorer)
            if slots is None:
                tx.rollback()
                return False
            state.place(wid, slots)
            return True

    def _place_evicting(
        self, state: PackingState, wid: str, scorer: greedy.NodeScorer, order: Sequence[str]
    ) -> bool:
        """``_place``, where emptying a node may also take out workloads whose penalties sum
        to less than ``wid``'s."""
        self._evict_budget = self._penalties.get(wid, 0.0)
        try:
            return self._place(state, wid, scorer, order)
        finally:
            self._evict_budget = 0.0

    def _slots(
        self, state: PackingState, wid: str, sites: Sequence[str], scorer: greedy.NodeScorer
    ) -> list[Slot] | None:
        spec, e = state.specs[wid], state.elig[wid]
        n = spec.replica_count
        if spec.topology == Topology.GANG:
            for s in sites:
                with state.transaction() as tx:
                    whole = self._take(state, wid, e.pools_by_site[s], n, scorer)
                    if whole is not None:
                        return whole
                    tx.rollback()
            return None
        got: list[Slot] = []
        if spec.topology == Topology.SPREAD:
            # one replica in each of min_sites sites first, then the rest anywhere
            for s in sites:
                if len(got) >= spec.min_sites:
                    break
                got += self._take(state, wid, e.pools_by_site[s], 1, scorer) or []
            if len(got) < spec.min_sites:
                return None
        rest = self._take(state, wid, e.pools, n - len(got), scorer, got)
        return None if rest is None else got + rest

    def _take(
        self,
        state: PackingState,
        wid: str,
        pools: Sequence[int],
        count: int,
        scorer: greedy.NodeScorer,
        held: Sequence[Slot] = (),
    ) -> list[Slot] | None:
        """Allocate ``count`` replicas of ``wid`` on nodes of ``pools``, the scorer's best
        node that fits, else a node emptied enough; None if room runs out (the caller's
        transaction takes back what was allocated). Nodes holding the workload's per-node
        limit (of ``held`` and these) are skipped."""
        cluster = state.cluster
        r = state.specs[wid].resources
        limit = state.elig[wid].per_node
        nodes = state.index.nodes(tuple(pools))
        out: list[Slot] = []
        there = Counter(node for node, _ in held)
        for _ in range(count):
            full = [node for node, k in there.items() if k >= limit]
            if full:
                nodes = nodes[~np.isin(nodes, np.asarray(full, dtype=np.int64))]
            fit = nodes[cluster.fit_mask(r, nodes)]
            if len(fit):
                node = int(fit[int(np.argmin(scorer(cluster, fit, r)))])
            else:
                node = self._room(state, r, nodes, pools)
                if node < 0:
                    return None
            out.append((node, cluster.allocate(node, r)))
            there[node] += 1
        return out

    def _room(
        self, state: PackingState, r: Resources, nodes: IntArray, pools: Sequence[int]
    ) -> int:
        """Empty enough of one of ``nodes`` for a replica of ``r``: of the nodes short of the
        least, the first whose movable replicas cover the shortfall and each find a place.
        Returns the node, or -1."""
        if self.moves >= MAX_MOVES:
            return -1
        cluster = state.cluster
        short_cpu = np.maximum(0, r.cpu_millis - cluster.free_cpu[nodes])
        short_mem = np.maximum(0, r.memory_mib - cluster.free_mem[nodes])
        # what each node's replicas could take out of these pools: in a full pool the replicas
        # that stay in it find no room, so the nodes whose leavers cover the shortfall go first
        out_cpu, out_mem = _leavers(state, nodes, pools)
        rest = (
            np.maximum(0, short_cpu - out_cpu) / cluster.cap_cpu[nodes]
            + np.maximum(0, short_mem - out_mem) / cluster.cap_mem[nodes]
        )
        need = short_cpu / cluster.cap_cpu[nodes] + short_mem / cluster.cap_mem[nodes]
        for k in np.lexsort((need, rest))[:CANDIDATES].tolist():
            a = int(nodes[k])
            if self._empty_for(state, a, r, int(short_cpu[k]), int(short_mem[k]), pools):
                return a
        return -1

    def _empty_for(
        self,
        state: PackingState,
        a: int,
        r: Resources,
        short_cpu: int,
        short_mem: int,
        avoid_pools: Sequence[int],
    ) -> bool:
        """Move replicas off node ``a`` until it has room for ``r``; all or nothing."""
        movable = [it for it in state.on_node(a) if not state.specs[it[0]].resources.wants_gpu]
        # the largest first: the fewest moves
        movable.sort(key=lambda it: -_size(state.specs[it[0]].resources, state, a))
        with state.transaction() as tx:
            moved = 0
            for ref in movable:
                if short_cpu <= 0 and short_mem <= 0:
                    break
                x = state.specs[ref[0]].resources
                if (short_cpu > 0 and not x.cpu_millis) and (short_mem > 0 and not x.memory_mib):
                    continue
                if not self._move_away(state, ref, a, avoid_pools):
                    continue
                moved += 1
                short_cpu -= x.cpu_millis
                short_mem -= x.memory_mib
            if short_cpu > 0 or short_mem > 0:
                short_cpu, short_mem = self._evict(state, a, short_cpu, short_mem)
            if short_cpu > 0 or short_mem > 0 or not state.cluster.fits(a, r):
                tx.rollback()
                return False
        self.moves += moved
        return True

    def _evict(
        self, state: PackingState, a: int, short_cpu: int, short_mem: int
    ) -> tuple[int, int]:
        """Take whole workloads with replicas on node ``a`` out (within the eviction budget,
        the least penalty per room freed first) until the shortfall is covered; what is still
        short."""
        if self._evict_budget <= 0:
            return short_cpu, short_mem
        on_a: dict[str, int] = {}
        for wid, _ in state.on_node(a):
            if not state.specs[wid].resources.wants_gpu:
                on_a[wid] = on_a.get(wid, 0) + 1

        def price(wid: str) -> float:
            return self._penalties.get(wid, 0.0) / (
                on_a[wid] * _size(state.specs[wid].resources, state, a)
            )

        for wid in sorted(on_a, key=price):
            if short_cpu <= 0 and short_mem <= 0:
                break
            penalty = self._penalties.get(wid, 0.0)
            x = state.specs[wid].resources
            if penalty >= self._evict_budget or not (
                (short_cpu > 0 and x.cpu_millis) or (short_mem > 0 and x.memory_mib)
            ):
                continue
            state.remove(wid)
            self._evict_budget -= penalty
            short_cpu -= on_a[wid] * x.cpu_millis
            short_mem -= on_a[wid] * x.memory_mib
        return short_cpu, short_mem

    @staticmethod
    def _move_away(state: PackingState, ref: ReplicaRef, a: int, avoid: Sequence[int]) -> bool:
        """Move replica ``ref`` from node ``a`` to a node its rules allow, outside ``avoid``
        (the pools being emptied) where it can, best fit, powered nodes first."""
        wid, i = ref
        spec, e = state.specs[wid], state.elig[wid]
        cluster = state.cluster
        others = {cluster.site_of(n) for j, (n, _) in enumerate(state.slots(wid)) if j != i}
        sites = sites_for_a_move(spec.topology, spec.min_sites, e.sites, cluster.site_of(a), others)
        avoid_set = set(avoid)
        pools = tuple(p for s in sites for p in e.pools_by_site[s] if p not in avoid_set)
        for choice in (pools, tuple(p for s in sites for p in e.pools_by_site[s])):
            nodes = state.index.nodes(choice)
            nodes = nodes[nodes != a]
            fit = state.with_room(wid, nodes[cluster.fit_mask(spec.resources, nodes)])
            if len(fit):
                score = greedy.awake_first(greedy.best_fit)(cluster, fit, spec.resources)
                state.move(wid, i, int(fit[int(np.argmin(score))]))
                return True
        return False


def _leavers(
    state: PackingState, nodes: IntArray, pools: Sequence[int]
) -> tuple[IntArray, IntArray]:
    """Per node of ``nodes``: the CPU and memory of its replicas (of this cycle, without GPUs)
    that may go to a pool outside ``pools`` (``_move_away``'s rules: a GANG replica keeps its
    site, a SPREAD one its site when the site is one of too few)."""
    inside = set(pools)
    cpu = np.zeros(len(nodes), dtype=np.int64)
    mem = np.zeros(len(nodes), dtype=np.int64)
    may: dict[str, bool] = {}
    for k, a in enumerate(nodes.tolist()):
        for wid, _ in state.on_node(a):
            if wid not in may:
                may[wid] = _may_leave(state, wid, inside)
            if may[wid]:
                cpu[k] += state.specs[wid].resources.cpu_millis
                mem[k] += state.specs[wid].resources.memory_mib
    return cpu, mem


def _may_leave(state: PackingState, wid: str, inside: set[int]) -> bool:
    spec = state.specs[wid]
    if spec.resources.wants_gpu or spec.topology == Topology.GANG:
        return False
    if not any(p not in inside for p in state.elig[wid].pools):
        return False
    if spec.topology == Topology.SPREAD:
        sites = [state.cluster.site_of(n) for n, _ in state.slots(wid)]
        # a site with two of its replicas can spare one; else the spread needs spare sites
        return len(set(sites)) > spec.min_sites or len(set(sites)) < len(sites)
    return True


def _size(x: Resources, state: PackingState, node: int) -> float:
    c = state.cluster
    return x.cpu_millis / float(c.cap_cpu[node]) + x.memory_mib / float(c.cap_mem[node])
