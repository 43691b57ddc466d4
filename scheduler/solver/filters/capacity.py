"""Why a replica does not fit now: the one rule that depends on what is allocated."""

from __future__ import annotations

import numpy as np

from scheduler.domain import Cluster, Reason, ReasonCode, WorkloadSpec
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
