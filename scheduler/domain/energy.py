"""The power and money model: what a node, a replica and a site draw and cost per hour.

IT power of a powered node = idle + (max - idle) x allocated CPU share + GPU watts x allocated
GPU share; an empty node is powered down and draws nothing. Facility power = IT power x PUE.
Energy cost = facility kW x the hour's price; carbon = facility kW x the hour's intensity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scheduler.domain.cluster import Cluster
from scheduler.domain.resources import GPU_MILLIS, Resources
from scheduler.domain.scenario import Pool, Site
from scheduler.domain.workload import Cost


def dynamic_watts(pool: Pool, r: Resources) -> float:
    """IT watts one replica adds to a powered node of ``pool`` (idle power excluded)."""
    cpu_share = r.cpu_millis / pool.node.cpu_millis
    return (
        pool.max_watts - pool.idle_watts
    ) * cpu_share + pool.gpu_watts * r.gpu_demand_millis / GPU_MILLIS


def attributed_watts(pool: Pool, r: Resources) -> float:
    """IT watts charged to one replica: its dynamic power plus its CPU share of the node's idle
    power, so that the replicas of a full node add up to the node's power."""
    return dynamic_watts(pool, r) + pool.idle_watts * r.cpu_millis / pool.node.cpu_millis


@dataclass(frozen=True, slots=True)
class SiteRates:
    """A site's price, carbon intensity and PUE for one hour."""

    site: str
    pue: float
    price_cny_per_kwh: float
    carbon_kg_per_kwh: float

    @classmethod
    def of(cls, site: Site, hour: int, month: int) -> SiteRates:
        return cls(site.name, site.pue, site.price_at(hour, month), site.carbon_at(hour))

    def cost(self, it_watts: float) -> Cost:
        facility = it_watts * self.pue
        kw = facility / 1000.0
        return Cost(kw * self.price_cny_per_kwh, kw * self.carbon_kg_per_kwh, facility)

    def money_per_it_watt(self, carbon_price_cny_per_tonne: float) -> float:
        """CNY per hour for one IT watt, energy and priced carbon together."""
        return (
            self.pue
            / 1000.0
            * (
                self.price_cny_per_kwh
                + self.carbon_kg_per_kwh * carbon_price_cny_per_tonne / 1000.0
            )
        )


def node_it_watts(cluster: Cluster) -> np.ndarray:
    """IT power of every node in its current state (0 for powered-down empty nodes)."""
    idle = np.asarray([p.idle_watts for p in cluster.pools])[cluster.node_pool]
    peak = np.asarray([p.max_watts for p in cluster.pools])[cluster.node_pool]
    gpu_w = np.asarray([p.gpu_watts for p in cluster.pools])[cluster.node_pool]
    cpu_share = (cluster.cap_cpu - cluster.free_cpu) / cluster.cap_cpu
    watts = idle + (peak - idle) * cpu_share + gpu_w * cluster.gpu_used_millis() / GPU_MILLIS
    return np.where(cluster.awake, watts, 0.0)


def site_costs(cluster: Cluster, hour: int, month: int) -> dict[str, Cost]:
    """Facility power, energy cost and carbon per hour of every site in the cluster's state."""
    watts = node_it_watts(cluster)
    out = {}
    for si, site in enumerate(cluster.scenario.sites):
        it = float(watts[cluster.node_site == si].sum())
        out[site.name] = SiteRates.of(site, hour, month).cost(it)
    return out
