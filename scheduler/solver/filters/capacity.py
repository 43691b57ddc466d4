"""Why a replica does not fit now: the one rule that depends on what is allocated."""

from __future__ import annotations

import numpy as np

from scheduler.domain import GPU_MILLIS, Cluster, Reason, ReasonCode, Resources, WorkloadSpec
from scheduler.solver.filters.plugins import amount


def capacity_reasons(
    cluster: Cluster, spec: WorkloadSpec, site: str, pools: tuple[int, ...]
) -> tuple[Reason, ...]:
    """Why a replica does not fit on any node of ``pools`` now: per resource, the largest free
    amount on any node that has room in every other resource."""
    r = spec.resources
    capacity = ReasonCode.CAPACITY
    nodes = np.flatnonzero(np.isin(cluster.node_pool, np.asarray(pools, dtype=np.int64)))
    if not len(nodes):
        return (Reason(capacity, "no nodes of a suitable kind", site, "cpu_millis"),)
    if cluster.fit_mask(r, nodes).any():
        return ()
    out: list[Reason] = []
    free = {
        "cpu_millis": cluster.free_cpu[nodes],
        "memory_mib": cluster.free_mem[nodes],
    }
    if r.gpus:
        free["gpus"] = (cluster.gpu_free[nodes] == 1000).sum(axis=1)
    elif r.gpu_millis:
        free["gpu_millis"] = cluster.gpu_free[nodes].max(axis=1)
    for res, arr in free.items():
        want = amount(r, res)
        largest = int(arr.max())
        if largest < want:
            out.append(
                Reason(
                    capacity,
                    f"{res}: {want} requested per replica, at most {largest} free on any node",
                    site,
                    res,
                    float(want),
                    float(largest),
                )
            )
    if not out:
        out.append(
            Reason(
                capacity, "no single node has room in every resource at once", site, "cpu_millis"
            )
        )
    return tuple(out)


def capacity_counts(cluster: Cluster, nodes: np.ndarray, r: Resources) -> np.ndarray:
    """How many replicas of ``r`` each node can take now."""
    counts = np.minimum(
        cluster.free_cpu[nodes] // max(r.cpu_millis, 1),
        cluster.free_mem[nodes] // max(r.memory_mib, 1),
    )
    if r.gpus:
        counts = np.minimum(counts, (cluster.gpu_free[nodes] == GPU_MILLIS).sum(axis=1) // r.gpus)
    elif r.gpu_millis:
        g = cluster.gpu_free[nodes]
        counts = np.minimum(counts, np.where(g > 0, g // r.gpu_millis, 0).sum(axis=1))
    return np.maximum(counts, 0)


def spread_node_reason(
    cluster: Cluster, spec: WorkloadSpec, per_node: int, site: str, pools: tuple[int, ...]
) -> Reason | None:
    """``spread_node`` when ``pools`` have room now for every replica only with more than
    ``per_node`` of them on some node (the limit, not the capacity, blocks); else None."""
    n = spec.replica_count
    if per_node >= n or not pools:
        return None
    nodes = np.flatnonzero(np.isin(cluster.node_pool, np.asarray(pools, dtype=np.int64)))
    counts = capacity_counts(cluster, nodes, spec.resources)
    spread = int(np.minimum(counts, per_node).sum())
    if spread >= n or int(counts.sum()) < n:
        return None
    own = "" if spec.max_replicas_per_node else " (the SERVICE default)"
    return Reason(
        ReasonCode.SPREAD_NODE,
        f"room for {n} replicas only with more than max_replicas_per_node = {per_node}{own} "
        f"on a node: at most {spread} fit {per_node} a node",
        site,
    )
