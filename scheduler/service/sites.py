"""Capacity, allocation and energy per site (and per node) in API terms, computed vectorised
from a copy of the cluster.

API conventions: in a capacity ``gpus`` counts physical GPUs and ``gpu_millis`` is gpus x 1000;
in an allocation ``gpu_millis`` sums every share and ``gpus`` counts GPUs holding any share.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from scheduler.domain import GPU_MILLIS, Cluster, Cost, Resources, site_costs


@dataclass(frozen=True, slots=True)
class NodeSummary:
    name: str
    pool: str
    capacity: Resources
    allocated: Resources
    gpu_model: str
    rack: str = ""
    cordoned: bool = False


@dataclass(frozen=True, slots=True)
class SiteSummary:
    name: str
    pue: float
    capacity: Resources
    allocated: Resources
    price_cny_per_kwh: float
    carbon_kg_per_kwh: float
    cost: Cost  # of the current allocation, per hour
    nodes: tuple[NodeSummary, ...] = ()
    # cores reserved by work that starts later, per hour from the current one
    reserved_cores_by_hour: tuple[float, ...] = ()


def summarize(
    cluster: Cluster,
    hour: int,
    month: int,
    include_nodes: bool,
    reserved_cores: npt.NDArray[np.float64] | None = None,
    cordoned: Collection[str] = (),
) -> list[SiteSummary]:
    """Every site's figures; ``reserved_cores`` (sites x hours ahead) as the loop's snapshot
    has them; ``cordoned`` the nodes cordoned now."""
    valid = cluster.gpu_free >= 0
    gpu_used = np.where(valid, GPU_MILLIS - cluster.gpu_free, 0)
    gpus_busy = (valid & (cluster.gpu_free < GPU_MILLIS)).sum(axis=1)
    gpu_millis_used = gpu_used.sum(axis=1)
    cpu_used = cluster.cap_cpu - cluster.free_cpu
    mem_used = cluster.cap_mem - cluster.free_mem
    n_sites = len(cluster.site_names)

    def per_site(values: np.ndarray) -> list[int]:
        sums = np.bincount(cluster.node_site, weights=values, minlength=n_sites)
        return [round(float(v)) for v in sums]

    cap = [per_site(cluster.cap_cpu), per_site(cluster.cap_mem), per_site(cluster.n_gpus)]
    alloc = [per_site(cpu_used), per_site(mem_used), per_site(gpus_busy), per_site(gpu_millis_used)]
    costs = site_costs(cluster, hour, month)
    out = []
    for si, site in enumerate(cluster.scenario.sites):
        nodes: tuple[NodeSummary, ...] = ()
        if include_nodes:
            idx = np.flatnonzero(cluster.node_site == si)
            nodes = tuple(
                NodeSummary(
                    name=cluster.node_names[i],
                    pool=cluster.pool_of(i).name,
                    capacity=Resources(
                        int(cluster.cap_cpu[i]),
                        int(cluster.cap_mem[i]),
                        int(cluster.n_gpus[i]),
                        int(cluster.n_gpus[i]) * GPU_MILLIS,
                    ),
                    allocated=Resources(
                        int(cpu_used[i]),
                        int(mem_used[i]),
                        int(gpus_busy[i]),
                        int(gpu_millis_used[i]),
                    ),
                    gpu_model=cluster.pool_of(i).gpu_model,
                    rack=cluster.rack_of(i),
                    cordoned=cluster.node_names[i] in cordoned,
                )
                for i in (int(j) for j in idx)
            )
        out.append(
            SiteSummary(
                name=site.name,
                pue=site.pue,
                capacity=Resources(cap[0][si], cap[1][si], cap[2][si], cap[2][si] * GPU_MILLIS),
                allocated=Resources(alloc[0][si], alloc[1][si], alloc[2][si], alloc[3][si]),
                price_cny_per_kwh=site.price_at(hour, month),
                carbon_kg_per_kwh=site.carbon_at(hour),
                cost=costs[site.name],
                nodes=nodes,
                reserved_cores_by_hour=(
                    () if reserved_cores is None else tuple(float(v) for v in reserved_cores[si])
                ),
            )
        )
    return out
