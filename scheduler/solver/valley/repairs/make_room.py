"""Room for work stranded over nodes: cores free on one node, memory on another."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from scheduler.domain import Resources
from scheduler.solver import greedy
from scheduler.solver.budget import TimeBudget
from scheduler.solver.objective import cheapest_site_order
from scheduler.solver.valley.state import PackingState, ReplicaRef

# moves (a swap counts two) per solve, and candidate nodes per pool and try
MAX_MOVES = 500
CANDIDATES = 200


class MakeRoom:
    """Place workloads that found no node although their pool has the capacity in sum: move
    one CPU-only replica placed this cycle from a node that nearly fits to another powered
    node of the same pool where it fits, or swap two, then place. Moves stay in the pool and
    on powered nodes, so SLOs, topology and costs stay as they were. Higher priority first."""

    name: ClassVar[str] = "make-room"

    def __init__(self) -> None:
        self.moves = 0

    def supports(self, state: PackingState) -> bool:
        return bool(state.open_workloads())

    def apply(self, state: PackingState, budget: TimeBudget) -> bool:
        order = cheapest_site_order(state.problem, state.params)
        changed = False
        for w in sorted(state.open_workloads(), key=lambda w: -w.spec.priority):
            e = state.elig[w.id]
            for _ in range(w.spec.replica_count + 1):  # room for each replica, then place
                if self.moves >= MAX_MOVES or budget.expired(grace=True):
                    return changed
                slots = greedy.place_slots(
                    state.cluster, state.index, w.spec, e, greedy.best_fit, order
                )
                if slots is not None:
                    state.place(w.id, slots)
                    changed = True
                    break
                # room in the sites where no node fits a replica now, else anywhere it may go
                r = w.spec.resources
                full = [
                    p
                    for site in e.sites
                    if not state.cluster.fit_mask(r, state.index.nodes(e.pools_by_site[site])).any()
                    for p in e.pools_by_site[site]
                ]
                if not self._room_for(state, r, full or list(e.pools)):
                    break
                changed = True
        return changed

    def _room_for(self, state: PackingState, r: Resources, pools: Sequence[int]) -> bool:
        """A move, or a swap of two replicas, that frees a node of ``pools`` for ``r``."""
        return any(self._room_in_pool(state, r, pi) for pi in pools)

    def _room_in_pool(self, state: PackingState, r: Resources, pi: int) -> bool:
        cluster = state.cluster
        nodes = state.index.by_pool[pi]
        awake = nodes[cluster.replicas_on[nodes] > 0]
        short_cpu = np.maximum(0, r.cpu_millis - cluster.free_cpu[awake])
        short_mem = np.maximum(0, r.memory_mib - cluster.free_mem[awake])
        # nodes that nearly fit first
        need = short_cpu / cluster.cap_cpu[awake] + short_mem / cluster.cap_mem[awake]
        candidates = np.argsort(need, kind="stable")[:CANDIDATES].tolist()
        # the movable replicas of the pool (CPU-only: no GPU indices to redo)
        movable = [(n, it) for n in awake.tolist() for it in self._movable(state, n)]
        if not movable:
            return False
        y_node = np.asarray([n for n, _ in movable], dtype=np.int64)
        y_cpu = np.asarray([state.specs[w].resources.cpu_millis for _, (w, _) in movable])
        y_mem = np.asarray([state.specs[w].resources.memory_mib for _, (w, _) in movable])
        for k in candidates:
            a = int(awake[k])
            for wid, i in self._movable(state, a):
                x = state.specs[wid].resources
                if x.cpu_millis < short_cpu[k] or x.memory_mib < short_mem[k]:
                    continue
                # a move: x to another powered node where it fits
                targets = state.with_room(wid, awake[(awake != a) & cluster.fit_mask(x, awake)])
                if len(targets):
                    b = int(targets[int(np.argmin(greedy.best_fit(cluster, targets, x)))])
                    state.move(wid, i, b)
                    self.moves += 1
                    return True
                # a swap: x with a replica y of node b, so that b still holds x and a then
                # fits r
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
                for j in np.flatnonzero(ok)[:CANDIDATES].tolist():
                    b, (ywid, yi) = movable[j]
                    with state.transaction() as tx:
                        state.lift(ywid, yi)
                        state.lift(wid, i)
                        # both nodes keep the per-node limits of both workloads
                        if state.room_for(wid, b) > 0 and state.room_for(ywid, a) > 0:
                            state.put(wid, i, b, ())
                            state.put(ywid, yi, a, ())
                            self.moves += 2
                            return True
                        tx.rollback()
        return False

    @staticmethod
    def _movable(state: PackingState, node: int) -> list[ReplicaRef]:
        return [it for it in state.on_node(node) if not state.specs[it[0]].resources.wants_gpu]
