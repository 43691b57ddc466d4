"""Node-level fit cuts: what pool totals do not see.

The model's capacity rows sum a pool's free capacity over its nodes, so a pool with 155 cores
free in all, scattered three at a time, looks able to hold 38 replicas of 4 cores. Per pool and
replica shape, the replicas that fit are at most those each powered node can take on its own
(its free capacity divided by the shape, rounded down) plus, per node woken, what an empty node
takes:

    sum over classes of shape s of x[c, p]  <=  F[s, p] + K[s, p] * wake[p]

Every node-level placement meets it (every replica is on some node; a node cannot hold more of
one shape than fit on it), so the bound stays valid; it is added only where it is tighter than
what the pool's capacity rows already imply.
"""

from __future__ import annotations

from collections import defaultdict

from scheduler.domain import Cluster, Resources
from scheduler.solver.filters.eligibility import replicas_per_node
from scheduler.solver.greedy import NodeIndex
from scheduler.solver.valley.linear import LinearModel
from scheduler.solver.valley.model import PoolState, WorkloadClass, amounts
from scheduler.solver.valley.packing import capacity_counts

# a cut is added where it is tighter by at least this many replicas than the capacity rows
MIN_GAIN = 1.0


def add_node_fit_cuts(
    lm: LinearModel,
    cluster: Cluster,
    index: NodeIndex,
    classes: list[WorkloadClass],
    pools: list[PoolState],
) -> int:
    """Add the cuts to ``lm``; returns how many."""
    by_shape: dict[tuple[int, Resources], list[int]] = defaultdict(list)
    most: dict[tuple[int, Resources], int] = defaultdict(int)
    for c in classes:
        for p, v in c.x.items():
            key = (p, c.spec.resources)
            by_shape[key].append(v)
            most[key] += int(lm.ub[v])
    state = {ps.index: ps for ps in pools}
    added = 0
    for (p, r), xs in by_shape.items():
        ps = state[p]
        if ps.wake < 0:
            continue
        nodes = index.by_pool[p]
        awake = nodes[cluster.replicas_on[nodes] > 0]
        fit_awake = int(capacity_counts(cluster, awake, r).sum())
        fit_empty = replicas_per_node(cluster.pools[p].node, r)
        # what the pool's capacity rows imply for this shape alone
        a = amounts(r)
        implied_awake = min(ps.free_awake[k] / a[k] for k in a if a[k] > 0)
        implied_empty = min(ps.node_cap[k] / a[k] for k in a if a[k] > 0)
        reach = fit_awake + fit_empty * ps.empty_nodes
        if reach >= most[(p, r)]:
            continue  # cannot bind: every replica of the shape fits even then
        gain = implied_awake - fit_awake + (implied_empty - fit_empty) * ps.empty_nodes
        if gain < MIN_GAIN - 1e-9:  # (a gain of exactly one replica comes out as 0.999...)
            continue
        lm.row([*xs, ps.wake], [1] * len(xs) + [-fit_empty], hi=fit_awake)
        added += 1
    return added
