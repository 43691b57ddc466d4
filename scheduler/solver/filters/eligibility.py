"""Where each workload may go, by the filters of ``plugins``, and whether it ever fits."""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from scheduler.domain import (
    GPU_MILLIS,
    Cluster,
    Reason,
    Resources,
    Scenario,
    Topology,
    WorkloadSpec,
)
from scheduler.solver.filters.plugins import FILTERS, Candidates
from scheduler.solver.problem import SolverParams

# the spec fields ``_final_reason`` reads besides those the filters declare
FINAL_READS = frozenset({"resources", "replicas", "topology", "min_sites"})


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


def pools_of_sites(cluster: Cluster) -> dict[str, tuple[int, ...]]:
    """The indices of ``cluster.pools`` per site."""
    of_site: dict[str, list[int]] = {}
    for pi, pool in enumerate(cluster.pools):
        of_site.setdefault(pool.site, []).append(pi)
    return {site: tuple(pools) for site, pools in of_site.items()}


def eligibility(
    scenario: Scenario,
    cluster: Cluster,
    spec: WorkloadSpec,
    params: SolverParams,
    pools_of_site: Mapping[str, tuple[int, ...]] | None = None,
) -> Eligibility:
    """Run every filter of ``FILTERS`` on every site: a site any filter rules out gets no pools
    and the filters' reasons."""
    pools_by_site: dict[str, tuple[int, ...]] = {}
    reasons_by_site: dict[str, tuple[Reason, ...]] = {}
    all_pools = cluster.pools
    of_site = pools_of_sites(cluster) if pools_of_site is None else pools_of_site
    for site in scenario.sites:
        c = Candidates(site, of_site.get(site.name, ()), all_pools, params)
        reasons: list[Reason] = []
        for f in FILTERS:
            verdict = f.check(spec, c)
            if verdict.reason is not None:
                reasons.append(verdict.reason)
                if not verdict.pools:
                    break  # nothing left for the later filters to judge
            if verdict.pools is not c.pools:
                c = Candidates(site, verdict.pools, all_pools, params)
        if reasons:
            reasons_by_site[site.name] = tuple(reasons)
            pools_by_site[site.name] = ()
        else:
            pools_by_site[site.name] = c.pools
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
    """``eligibility`` of many workloads; workloads alike in every field the rules read (what
    the filters declare, and ``FINAL_READS``) share one computation: the rules depend on node
    shapes, not on what is allocated."""
    key_of = operator.attrgetter(*sorted(FILTERS.reads | FINAL_READS))
    cache: dict[tuple[object, ...], Eligibility] = {}
    of_site = pools_of_sites(cluster)
    out = {}
    for wid, spec in workloads:
        key = key_of(spec)
        e = cache.get(key)
        if e is None:
            e = cache[key] = eligibility(scenario, cluster, spec, params, of_site)
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
    return sum(
        replicas_per_node(cluster.pools[pi].node, r) * cluster.pools[pi].count for pi in pools
    )


def replicas_per_node(node: Resources, r: Resources) -> int:
    """How many replicas of ``r`` one empty node of shape ``node`` holds."""
    per = [node.cpu_millis // max(r.cpu_millis, 1), node.memory_mib // max(r.memory_mib, 1)]
    if r.gpus:
        per.append(node.gpus // r.gpus)
    elif r.gpu_millis:
        per.append(node.gpus * (GPU_MILLIS // r.gpu_millis))
    return max(0, min(per))
