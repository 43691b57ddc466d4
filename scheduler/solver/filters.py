"""Hard rules that do not depend on the cycle's decisions: SLO, residency, GPU model, size.

Like Kubernetes Filter plugins, each rule returns machine-readable reasons rather than a boolean,
so that "why is it pending?" has an answer per site.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from scheduler.domain import Cluster, Reason, Resources, Scenario, Topology, WorkloadSpec
from scheduler.solver.problem import SolverParams

RESOURCE_NAMES = ("cpu_millis", "memory_mib", "gpus", "gpu_millis")


@dataclass(frozen=True, slots=True)
class Eligibility:
    """Where a workload's replicas may go: pool indices of ``cluster.pools`` per site, and
    the reasons every other site is out. ``final`` is set when it can never fit as specified."""

    pools_by_site: dict[str, tuple[int, ...]]
    reasons_by_site: dict[str, tuple[Reason, ...]]
    final_reason: str = ""

    @property
    def pools(self) -> tuple[int, ...]:
        return tuple(p for ps in self.pools_by_site.values() for p in ps)

    @property
    def sites(self) -> tuple[str, ...]:
        return tuple(s for s, ps in self.pools_by_site.items() if ps)


def _fits_node_shape(node: Resources, r: Resources) -> str:
    """The first resource in which one replica exceeds an empty node, or ''."""
    if r.cpu_millis > node.cpu_millis:
        return "cpu_millis"
    if r.memory_mib > node.memory_mib:
        return "memory_mib"
    if r.gpus > node.gpus:
        return "gpus"
    if r.gpu_millis and node.gpus == 0:
        return "gpu_millis"
    return ""


def _amount(r: Resources, resource: str) -> int:
    return int(getattr(r, resource))


def eligibility(
    scenario: Scenario, cluster: Cluster, spec: WorkloadSpec, params: SolverParams
) -> Eligibility:
    r = spec.resources
    pools_by_site: dict[str, tuple[int, ...]] = {}
    reasons_by_site: dict[str, tuple[Reason, ...]] = {}
    for site in scenario.sites:
        reasons: list[Reason] = []
        if spec.allowed_sites and site.name not in spec.allowed_sites:
            reasons.append(
                Reason(
                    "residency",
                    f"site {site.name} is not in allowed_sites {list(spec.allowed_sites)}",
                    site.name,
                )
            )
        if spec.max_latency_ms > 0 and spec.origin:
            rtt = site.latency_ms[spec.origin]
            if rtt > spec.max_latency_ms:
                reasons.append(
                    Reason(
                        "slo",
                        f"RTT {rtt:.1f} ms from {spec.origin} > SLO {spec.max_latency_ms:.1f} ms",
                        site.name,
                    )
                )
        pools: list[int] = []
        model_ok = False
        too_big: list[tuple[str, int, int]] = []
        for pi, pool in enumerate(cluster.pools):
            if pool.site != site.name:
                continue
            if r.wants_gpu:
                if pool.node.gpus == 0:
                    continue
                if spec.gpu_models and pool.gpu_model not in spec.gpu_models:
                    continue
                model_ok = True
            elif pool.node.gpus and not params.cpu_on_gpu_nodes:
                continue
            else:
                model_ok = True
            big = _fits_node_shape(pool.node, r)
            if big:
                too_big.append((big, _amount(r, big), _amount(pool.node, big)))
                continue
            pools.append(pi)
        if not model_ok:
            if r.wants_gpu and spec.gpu_models:
                models = sorted({p.gpu_model for p in site.pools if p.gpu_model})
                reasons.append(
                    Reason(
                        "gpu_model",
                        f"no node with GPU model {list(spec.gpu_models)} (site has {models})",
                        site.name,
                    )
                )
            else:
                reasons.append(
                    Reason(
                        "capacity",
                        "no node of a suitable kind",
                        site.name,
                        "gpus" if r.wants_gpu else "cpu_millis",
                    )
                )
        elif not pools and too_big:
            res, want, largest = max(too_big, key=lambda t: t[2])
            reasons.append(
                Reason(
                    "capacity",
                    f"one replica needs {res} {want}, larger than every node ({largest})",
                    site.name,
                    res,
                    float(want),
                    float(largest),
                )
            )
        if reasons:
            reasons_by_site[site.name] = tuple(reasons)
            pools_by_site[site.name] = ()
        else:
            pools_by_site[site.name] = tuple(pools)
    elig = Eligibility(pools_by_site, reasons_by_site)
    final = _final_reason(cluster, spec, elig)
    if final:
        return Eligibility(pools_by_site, reasons_by_site, final)
    return elig


def eligibility_of(
    scenario: Scenario,
    cluster: Cluster,
    workloads: Iterable[tuple[str, WorkloadSpec]],
    params: SolverParams,
) -> dict[str, Eligibility]:
    """``eligibility`` of many workloads; workloads alike in every field the rules read share
    one computation (they depend on node shapes, not on what is allocated)."""
    cache: dict[tuple[object, ...], Eligibility] = {}
    out = {}
    for wid, spec in workloads:
        key = (
            spec.resources,
            spec.replica_count,
            spec.origin,
            spec.max_latency_ms,
            spec.allowed_sites,
            spec.gpu_models,
            spec.topology,
            spec.min_sites,
        )
        e = cache.get(key)
        if e is None:
            e = cache[key] = eligibility(scenario, cluster, spec, params)
        out[wid] = e
    return out


def _final_reason(cluster: Cluster, spec: WorkloadSpec, elig: Eligibility) -> str:
    sites = elig.sites
    if not sites:
        parts = [
            f"{s}: {'; '.join(r.message for r in rs)}" for s, rs in elig.reasons_by_site.items()
        ]
        return "no site qualifies: " + " | ".join(parts)
    n = spec.replica_count
    r = spec.resources
    if spec.topology == Topology.SPREAD and len(sites) < spec.min_sites:
        qualifying = ", ".join(sites)
        return f"SPREAD needs {spec.min_sites} sites but only {len(sites)} qualify ({qualifying})"
    if spec.topology == Topology.GANG:
        # the whole gang must fit in one site's total capacity (empty nodes), or it never will
        for s in sites:
            if _replicas_fitting_empty(cluster, elig.pools_by_site[s], r) >= n:
                return ""
        return f"GANG of {n} replicas does not fit into any single qualifying site even when empty"
    total = sum(_replicas_fitting_empty(cluster, elig.pools_by_site[s], r) for s in sites)
    if total < n:
        return (
            f"{n} replicas do not fit into the qualifying sites even when empty (at most {total})"
        )
    return ""


def _replicas_fitting_empty(cluster: Cluster, pools: tuple[int, ...], r: Resources) -> int:
    """How many replicas of ``r`` the pools hold when empty (per-node integer packing)."""
    total = 0
    for pi in pools:
        node = cluster.pools[pi].node
        per = [node.cpu_millis // r.cpu_millis, node.memory_mib // r.memory_mib]
        if r.gpus:
            per.append(node.gpus // r.gpus)
        elif r.gpu_millis:
            per.append(node.gpus * (1000 // r.gpu_millis))
        total += min(per) * cluster.pools[pi].count
    return total


def capacity_reasons(
    cluster: Cluster, spec: WorkloadSpec, site: str, pools: tuple[int, ...]
) -> tuple[Reason, ...]:
    """Why a replica does not fit on any node of ``pools`` now: per resource, the largest free
    amount on any node that has room in every other resource."""
    r = spec.resources
    nodes = np.flatnonzero(np.isin(cluster.node_pool, np.asarray(pools, dtype=np.int64)))
    if not len(nodes):
        return (Reason("capacity", "no nodes of a suitable kind", site, "cpu_millis"),)
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
        want = _amount(r, res)
        largest = int(arr.max())
        if largest < want:
            out.append(
                Reason(
                    "capacity",
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
                "capacity", "no single node has room in every resource at once", site, "cpu_millis"
            )
        )
    return tuple(out)
