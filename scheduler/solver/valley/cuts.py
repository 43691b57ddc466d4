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

import numpy as np

from scheduler.domain import GPU_MILLIS, Cluster, Resources
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


# thresholds of the GPU share cuts below (millis of one GPU)
SHARE_THRESHOLDS = (100, 200, 300, 400)


def share_weight(r: Resources, eps: int) -> int:
    """A request's GPU demand under the dual-feasible function u_eps of one GPU (Fekete and
    Schepers): a share above ``1000 - eps`` counts as the whole GPU, one below ``eps`` as
    nothing, any other as itself; whole GPUs count 1000 each."""
    s = r.gpu_millis
    if s > GPU_MILLIS - eps:
        s = GPU_MILLIS
    elif s < eps:
        s = 0
    return r.gpus * GPU_MILLIS + s


def add_gpu_share_cuts(
    lm: LinearModel,
    cluster: Cluster,
    index: NodeIndex,
    classes: list[WorkloadClass],
    pools: list[PoolState],
) -> int:
    """GPU shares do not tile GPUs: two 0.81 shares need two GPUs, which the summed millis
    (and the count of shares above half a GPU) miss when a pool's GPUs are nearly all asked
    for. Per GPU pool and threshold ``eps``, the demand weighed by ``share_weight`` is at most
    what its GPUs can hold under the same weights: a GPU with ``g`` millis free holds at most
    ``g`` if ``g <= 1000 - eps`` (no share counted whole fits it), else 1000; a woken node its
    GPUs x 1000. Valid for every node-level placement (the weights are dual feasible), so the
    bound stays a bound; the relaxation's decision then asks no more of a pool than its GPUs
    can take. Returns how many rows were added."""
    state = {ps.index: ps for ps in pools}
    # per pool, the model variable and the request of every class asking it for GPUs
    users: dict[int, list[tuple[int, Resources]]] = defaultdict(list)
    for c in classes:
        if c.spec.resources.wants_gpu:
            for p, v in c.x.items():
                users[p].append((v, c.spec.resources))
    added = 0
    for p, asking in users.items():
        ps = state[p]
        if ps.wake < 0 or not any(r.gpu_millis for _, r in asking):
            continue
        nodes = index.by_pool[p]
        g = cluster.gpu_free[nodes[cluster.replicas_on[nodes] > 0]].ravel()
        per_node = cluster.pools[p].node.gpus * GPU_MILLIS
        for eps in SHARE_THRESHOLDS:
            weights = [share_weight(r, eps) for _, r in asking]
            if all(w == r.gpu_demand_millis for w, (_, r) in zip(weights, asking, strict=True)):
                continue  # the same row as the summed millis
            row = [(v, w) for (v, _), w in zip(asking, weights, strict=True) if w]
            cap = int(np.where(g > GPU_MILLIS - eps, GPU_MILLIS, np.maximum(g, 0)).sum())
            lm.row([v for v, _ in row] + [ps.wake], [w for _, w in row] + [-per_node], hi=cap)
            added += 1
    return added
