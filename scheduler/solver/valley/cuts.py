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
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import numpy as np

from scheduler.domain import GPU_MILLIS, Cluster, Resources
from scheduler.solver.filters.eligibility import replicas_per_node
from scheduler.solver.greedy import NodeIndex
from scheduler.solver.valley.linear import INF, LinearModel
from scheduler.solver.valley.model import PoolState, Row, WorkloadClass, amounts
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
    rows = node_fit_rows(lm, cluster, index, classes, pools)
    lm.rows += rows
    return len(rows)


def node_fit_rows(
    lm: LinearModel,
    cluster: Cluster,
    index: NodeIndex,
    classes: list[WorkloadClass],
    pools: list[PoolState],
    larger: bool = False,
) -> list[Row]:
    """The cuts, per pool and shape where tighter than the capacity rows. With ``larger``,
    those of CPU-only shapes extended to the replicas at least as large in CPU and memory
    (without GPUs): a node holds no more of them than of the shape itself (three 2.5-core
    replicas and two of 3.5 cores fit three 4-core nodes in sum, yet the nodes hold three of
    them at most); only where some larger shape is asked for."""
    by_shape: dict[tuple[int, Resources], list[int]] = defaultdict(list)
    for c in classes:
        for p, v in c.x.items():
            by_shape[(p, c.spec.resources)].append(v)
    state = {ps.index: ps for ps in pools}
    rows: list[Row] = []
    for (p, r), most, variables in _candidates(lm, by_shape, larger):
        ps = state[p]
        if ps.wake < 0:
            continue
        nodes = index.by_pool[p]
        awake = nodes[cluster.replicas_on[nodes] > 0]
        fit_awake = int(capacity_counts(cluster, awake, r).sum())
        fit_empty = replicas_per_node(cluster.pools[p].node, r)
        if fit_awake + fit_empty * ps.empty_nodes >= most:
            continue  # cannot bind: every replica of the shape fits even then
        # what the pool's capacity rows imply for this shape alone (or replicas as large)
        a = amounts(r)
        implied_awake = min(ps.free_awake[k] / a[k] for k in a if a[k] > 0)
        implied_empty = min(ps.node_cap[k] / a[k] for k in a if a[k] > 0)
        gain = implied_awake - fit_awake + (implied_empty - fit_empty) * ps.empty_nodes
        if gain < MIN_GAIN - 1e-9:  # (a gain of exactly one replica comes out as 0.999...)
            continue
        xs = variables()
        rows.append(([*xs, ps.wake], [1] * len(xs) + [-fit_empty], -INF, fit_awake))
    return rows


def _candidates(
    lm: LinearModel, by_shape: dict[tuple[int, Resources], list[int]], larger: bool
) -> Iterator[tuple[tuple[int, Resources], int, Callable[[], list[int]]]]:
    """Per pool and shape: the most replicas a cut over it may count, and its variables
    (built only for a cut that is added); with ``larger``, over the shape and every CPU-only
    shape at least as large, where there is one."""
    ub = {key: sum(int(lm.ub[v]) for v in xs) for key, xs in by_shape.items()}
    if not larger:
        for key, xs in by_shape.items():
            yield key, ub[key], partial(list, xs)
        return
    shapes: dict[int, list[Resources]] = defaultdict(list)
    for p, r in by_shape:
        if not r.wants_gpu:
            shapes[p].append(r)
    for p, rs in shapes.items():
        cpu = np.asarray([r.cpu_millis for r in rs])
        mem = np.asarray([r.memory_mib for r in rs])
        most = np.asarray([ub[(p, r)] for r in rs])
        for i, r in enumerate(rs):
            larger_ones = np.flatnonzero((cpu >= cpu[i]) & (mem >= mem[i]))
            if len(larger_ones) > 1:
                keys = [(p, rs[j]) for j in larger_ones.tolist()]
                yield (p, r), int(most[larger_ones].sum()), partial(_joined, by_shape, keys)


def _joined(by_shape: dict[tuple[int, Resources], list[int]], keys: list[Any]) -> list[int]:
    return [v for key in keys for v in by_shape[key]]


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
