"""Where each workload may go, by the filters of ``plugins``, and whether it ever fits."""

from __future__ import annotations

import operator
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from scheduler.domain import (
    GPU_MILLIS,
    Cluster,
    Reason,
    ReasonCode,
    Resources,
    Scenario,
    Topology,
    WorkloadSpec,
    per_node_limit,
)
from scheduler.solver.filters.plugins import FILTERS, Candidates
from scheduler.solver.problem import SolverParams

# the spec fields ``_final_reason`` reads besides those the filters declare
FINAL_READS = frozenset(
    {"resources", "replicas", "topology", "min_sites", "kind", "max_replicas_per_node"}
)


@dataclass(frozen=True, slots=True)
class Eligibility:
    """Where a workload's replicas may go: pool indices of ``cluster.pools`` per site, and
    the reasons every other site is out. ``final`` is set when it can never fit as specified
    (``final_code`` then says why when one code does: ``spread_node``). ``per_node`` is the most
    replicas one node may hold (``per_node_limit`` of the domain, with
    ``SolverParams.default_spread``): every placement keeps it."""

    pools_by_site: dict[str, tuple[int, ...]]
    reasons_by_site: dict[str, tuple[Reason, ...]]
    final_reason: str = ""
    per_node: int = 1 << 30
    final_code: ReasonCode | None = None

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
    per_node = per_node_limit(
        spec.replicas, spec.kind, spec.max_replicas_per_node, params.default_spread
    )
    elig = Eligibility(pools_by_site, reasons_by_site, per_node=per_node)
    final = _final_reason(cluster, spec, elig)
    if final:
        return Eligibility(pools_by_site, reasons_by_site, final, per_node)
    final = _spread_node_reason(cluster, spec, elig)
    if final:
        return Eligibility(pools_by_site, reasons_by_site, final, per_node, ReasonCode.SPREAD_NODE)
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


def _spread_node_reason(cluster: Cluster, spec: WorkloadSpec, elig: Eligibility) -> str:
    """Why the workload never fits with at most ``elig.per_node`` replicas a node (though it
    would without the limit), or ""."""
    n, limit = spec.replica_count, elig.per_node
    if limit >= n:
        return ""
    r = spec.resources
    by_site = {
        s: _replicas_fitting_empty(cluster, elig.pools_by_site[s], r, limit) for s in elig.sites
    }
    most = max(by_site.values()) if spec.topology == Topology.GANG else sum(by_site.values())
    if most >= n:
        return ""
    own = (
        "max_replicas_per_node"
        if spec.max_replicas_per_node
        else ("max_replicas_per_node (the SERVICE default, ceil(replicas / 2))")
    )
    nodes = sum(
        cluster.pools[p].count
        for s in elig.sites
        for p in elig.pools_by_site[s]
        if replicas_per_node(cluster.pools[p].node, r) > 0
    )
    where = "in any one site" if spec.topology == Topology.GANG else "on the eligible nodes"
    return (
        f"{n} replicas with {own} = {limit} need more nodes than qualify: at most {most} "
        f"fit {where} ({nodes} eligible nodes x {limit})"
    )


def _replicas_fitting_empty(
    cluster: Cluster, pools: tuple[int, ...], r: Resources, per_node: int | None = None
) -> int:
    """How many replicas of ``r`` the pools hold when empty (per-node integer packing), at
    most ``per_node`` a node when given."""
    total = 0
    for pi in pools:
        per = replicas_per_node(cluster.pools[pi].node, r)
        if per_node is not None:
            per = min(per, per_node)
        total += per * cluster.pools[pi].count
    return total


def replicas_per_node(node: Resources, r: Resources) -> int:
    """How many replicas of ``r`` one empty node of shape ``node`` holds."""
    per = [node.cpu_millis // max(r.cpu_millis, 1), node.memory_mib // max(r.memory_mib, 1)]
    if r.gpus:
        per.append(node.gpus // r.gpus)
    elif r.gpu_millis:
        per.append(node.gpus * (GPU_MILLIS // r.gpu_millis))
    return max(0, min(per))


def sites_for_a_move(
    topology: Topology,
    min_sites: int,
    eligible: Sequence[str],
    site: str,
    other_sites: Collection[str],
) -> list[str]:
    """Where a replica leaving ``site`` may go, given the sites of the workload's other
    replicas: a GANG's replicas stay in one site, a SPREAD's site that its other replicas leave
    short of ``min_sites`` keeps its replica; else any ``eligible`` site."""
    if topology == Topology.GANG:
        return [site]
    if topology == Topology.SPREAD and site not in other_sites and len(other_sites) < min_sites:
        return [site]
    return list(eligible)
