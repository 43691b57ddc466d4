"""Power nodes down again: empty the nodes woken this cycle onto other powered nodes."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from scheduler.solver import greedy
from scheduler.solver.budget import TimeBudget
from scheduler.solver.valley.state import PackingState

# give up on a pool after this many nodes that could not be emptied
MAX_FAILURES = 3


class Consolidate:
    """Move every replica of a node woken in this cycle onto other powered nodes of its pool,
    emptiest woken node first, while that succeeds. Moves stay inside the pool, so costs other
    than the node's idle power, SLOs and topology are unchanged."""

    name: ClassVar[str] = "consolidate"

    def supports(self, state: PackingState) -> bool:
        return bool(state.placed())

    def apply(self, state: PackingState, budget: TimeBudget) -> bool:
        changed = False
        for pool_nodes in state.index.by_pool:
            changed |= self._pool(state, pool_nodes)
        return changed

    def _pool(self, state: PackingState, pool_nodes: greedy.IntArray) -> bool:
        cluster = state.cluster
        woken = state.woken(pool_nodes)
        if len(woken) < 2:
            return False
        used = 1.0 - cluster.free_cpu[woken] / cluster.cap_cpu[woken]
        failures = 0
        changed = False
        for node in woken[np.argsort(used, kind="stable")].tolist():
            if failures >= MAX_FAILURES:
                break
            if self._empty(state, node, pool_nodes):
                changed = True
            else:
                failures += 1
        return changed

    @staticmethod
    def _empty(state: PackingState, node: int, pool_nodes: greedy.IntArray) -> bool:
        """Move every replica off ``node``, best fit, or none of them."""
        cluster = state.cluster
        items = sorted(state.on_node(node), key=lambda it: -state.specs[it[0]].resources.cpu_millis)
        with state.transaction() as tx:
            for wid, i in items:
                r = state.specs[wid].resources
                targets = pool_nodes[(cluster.replicas_on[pool_nodes] > 0) & (pool_nodes != node)]
                targets = state.with_room(wid, targets[cluster.fit_mask(r, targets)])
                if not len(targets):
                    tx.rollback()  # the node stays powered
                    return False
                best = int(targets[int(np.argmin(greedy.best_fit(cluster, targets, r)))])
                state.move(wid, i, best)
        return True
