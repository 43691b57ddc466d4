"""Room for work stranded over nodes: cores free on one node, memory on another."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import ClassVar

import numpy as np

from scheduler.domain import Resources
from scheduler.solver import greedy
from scheduler.solver.budget import TimeBudget
from scheduler.solver.filters import capacity_counts
from scheduler.solver.objective import cheapest_site_order
from scheduler.solver.valley.state import PackingState, ReplicaRef

# moves (a swap counts two) per solve, candidate nodes per pool and try, and nodes tried
# (best fit first) for a replica moved out of the way
MAX_MOVES = 500
CANDIDATES = 200
TARGETS = 8


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
                if not self._room_for(state, r, e.per_node, full or list(e.pools)):
                    break
                changed = True
        return changed

    def _room_for(
        self, state: PackingState, r: Resources, per_node: int, pools: Sequence[int]
    ) -> bool:
        """A move, or a swap of two replicas, that frees a node of ``pools`` for ``r``,
        on a node with room for fewer than ``per_node`` replicas of it (more room on a node
        the workload fills to its per-node limit is no use)."""
        return any(self._room_in_pool(state, r, per_node, pi) for pi in pools)

    def _room_in_pool(self, state: PackingState, r: Resources, per_node: int, pi: int) -> bool:
        cluster = state.cluster
        nodes = state.index.by_pool[pi]
        awake = nodes[cluster.replicas_on[nodes] > 0]
        fits = capacity_counts(cluster, awake, r)
        # nodes with room for fewer replicas than the limit, and what each lacks for one more
        grow = np.flatnonzero(fits < per_node)
        more = fits[grow] + 1
        short_cpu = np.maximum(0, more * r.cpu_millis - cluster.free_cpu[awake[grow]])
        short_mem = np.maximum(0, more * r.memory_mib - cluster.free_mem[awake[grow]])
        # nodes that nearly fit first
        need = short_cpu / cluster.cap_cpu[awake[grow]] + short_mem / cluster.cap_mem[awake[grow]]
        candidates = np.argsort(need, kind="stable")[:CANDIDATES].tolist()
        # the movable replicas of the pool (CPU-only: no GPU indices to redo)
        movable = [(n, it) for n in awake.tolist() for it in self._movable(state, n)]
        if not movable:
            return False
        y_node = np.asarray([n for n, _ in movable], dtype=np.int64)
        y_cpu = np.asarray([state.specs[w].resources.cpu_millis for _, (w, _) in movable])
        y_mem = np.asarray([state.specs[w].resources.memory_mib for _, (w, _) in movable])

        def room(*on: int) -> int:  # replicas of r the nodes may take, within the limit
            return int(np.minimum(capacity_counts(cluster, np.asarray(on), r), per_node).sum())

        for k in candidates:
            a = int(awake[grow[k]])
            need_cpu, need_mem = int(more[k]) * r.cpu_millis, int(more[k]) * r.memory_mib
            for wid, i in self._movable(state, a):
                x = state.specs[wid].resources
                if x.cpu_millis < short_cpu[k] or x.memory_mib < short_mem[k]:
                    continue
                # a move: x to another powered node where it fits, if that makes room
                targets = state.with_room(wid, awake[(awake != a) & cluster.fit_mask(x, awake)])
                best = np.argsort(greedy.best_fit(cluster, targets, x), kind="stable")
                for b in targets[best[:TARGETS]].tolist():
                    if self._changed(state, room, a, b, partial(state.move, wid, i, b), 1):
                        return True
                # a swap: x with a replica y of node b, so that b still holds x and a then
                # fits one more r
                fb_cpu, fb_mem = cluster.free_cpu[y_node], cluster.free_mem[y_node]
                fa_cpu, fa_mem = int(cluster.free_cpu[a]), int(cluster.free_mem[a])
                ok = (
                    (y_node != a)
                    & (y_cpu >= x.cpu_millis - fb_cpu)
                    & (y_mem >= x.memory_mib - fb_mem)
                    & (y_cpu <= fa_cpu + x.cpu_millis - need_cpu)
                    & (y_mem <= fa_mem + x.memory_mib - need_mem)
                )
                for j in np.flatnonzero(ok)[:CANDIDATES].tolist():
                    b, (ywid, yi) = movable[j]
                    swap = partial(_swap, state, (wid, i), a, (ywid, yi), b)
                    if self._changed(state, room, a, b, swap, 2):
                        return True
        return False

    def _changed(
        self,
        state: PackingState,
        room: Callable[..., int],
        a: int,
        b: int,
        change: Callable[[], object],
        moves: int,
    ) -> bool:
        """Make ``change`` and keep it if nodes ``a`` and ``b`` then have room for more
        replicas (a move into a node that had room may only shift it); False if rolled back."""
        before = room(a, b)
        with state.transaction() as tx:
            if change() is False or room(a, b) <= before:
                tx.rollback()
                return False
        self.moves += moves
        return True

    @staticmethod
    def _movable(state: PackingState, node: int) -> list[ReplicaRef]:
        return [it for it in state.on_node(node) if not state.specs[it[0]].resources.wants_gpu]


def _swap(state: PackingState, x: ReplicaRef, a: int, y: ReplicaRef, b: int) -> bool:
    """Replica ``x`` (on node ``a``) to ``b`` and ``y`` (on ``b``) to ``a``, if both nodes
    keep the per-node limits of both workloads; False if not (the caller's transaction takes
    the lifts back)."""
    state.lift(*y)
    state.lift(*x)
    if state.room_for(x[0], b) <= 0 or state.room_for(y[0], a) <= 0:
        return False
    state.put(*x, b, ())
    state.put(*y, a, ())
    return True
