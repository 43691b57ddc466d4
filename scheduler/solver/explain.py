"""Reasons for every unplaced workload, per site, and verdicts for ``ExplainWorkload``."""

from __future__ import annotations

from collections.abc import Mapping

from scheduler.domain import (
    Cluster,
    Cost,
    Explanation,
    Reason,
    ReasonCode,
    ReplicaPlacement,
    SiteRates,
    SiteVerdict,
    Topology,
    WorkloadSpec,
    attributed_watts,
)
from scheduler.solver.filters import Eligibility, capacity_reasons, spread_node_reason
from scheduler.solver.problem import Problem, Unplaced

# the code of a final verdict on a site that qualifies but can never hold the whole workload
_TOPOLOGY_CODES = {Topology.GANG: ReasonCode.GANG, Topology.SPREAD: ReasonCode.SPREAD}


def site_reasons(
    before: Cluster,
    after: Cluster,
    spec: WorkloadSpec,
    elig: Eligibility,
    site: str,
    higher_priority_sites: set[str],
) -> tuple[Reason, ...]:
    """Why ``spec`` is not (wholly) at ``site`` after a cycle."""
    if site in elig.reasons_by_site:
        return elig.reasons_by_site[site]
    pools = elig.pools_by_site[site]
    now = capacity_reasons(after, spec, site, pools)
    if now:
        if not capacity_reasons(before, spec, site, pools):
            if site in higher_priority_sites:
                return (
                    Reason(
                        ReasonCode.PRIORITY,
                        "capacity taken by higher-priority work in this cycle",
                        site,
                    ),
                )
            return tuple(
                Reason(
                    r.code,
                    r.message + " (after this cycle's placements)",
                    site,
                    r.resource,
                    r.requested,
                    r.largest_free,
                )
                for r in now
            )
        return now
    if spec.topology == Topology.GANG:
        return (
            Reason(
                ReasonCode.GANG,
                f"not all {spec.replica_count} replicas fit in {site} at once",
                site,
            ),
        )
    if spec.topology == Topology.SPREAD:
        return (
            Reason(ReasonCode.SPREAD, f"cannot spread over {spec.min_sites} sites with room", site),
        )
    limited = spread_node_reason(after, spec, elig.per_node, site, elig.pools)
    if limited is not None:
        return (limited,)
    return (
        Reason(
            ReasonCode.CAPACITY,
            f"room for some but not all {spec.replica_count} replicas across the qualifying sites",
            site,
        ),
    )


def unplaced(
    problem: Problem,
    wid: str,
    spec: WorkloadSpec,
    elig: Eligibility,
    after: Cluster,
    higher_priority_sites: set[str],
) -> Unplaced:
    if elig.final_reason:
        reasons = tuple(r for rs in elig.reasons_by_site.values() for r in rs)
        # sites that qualify one replica at a time but can never hold the whole workload
        code = elig.final_code or _TOPOLOGY_CODES.get(spec.topology, ReasonCode.CAPACITY)
        final = tuple(Reason(code, elig.final_reason, s) for s in elig.sites)
        # a per-node limit is the reason, whatever else rules some sites out: it comes first
        reasons = final + reasons if elig.final_code else reasons + final
        return Unplaced(wid, True, elig.final_reason, reasons)
    reasons = tuple(
        r
        for s in problem.scenario.site_names
        for r in site_reasons(problem.cluster, after, spec, elig, s, higher_priority_sites)
    )
    # the summary names what stands in the way now (capacity, priority, topology) rather
    # than a site that never qualifies
    static = {id(r) for rs in elig.reasons_by_site.values() for r in rs}
    dynamic = [r for r in reasons if id(r) not in static]
    first = (dynamic or list(reasons))[0] if reasons else None
    text = f"{first.site}: {first.message}" if first is not None else "does not fit now"
    return Unplaced(wid, False, f"does not fit now: {text}", reasons)


def explain(
    problem: Problem,
    spec: WorkloadSpec,
    elig: Eligibility,
    placements: tuple[ReplicaPlacement, ...],
    rates: Mapping[str, SiteRates],
    reason: str = "",
) -> Explanation:
    """Why a workload is where it is (or why not placed): a verdict and a cost per site.

    ``problem.cluster`` is the cluster as it is now (the workload's own replicas included)."""
    cluster = problem.cluster
    verdicts = []
    placed_sites = {p.site for p in placements}
    for site in problem.scenario.sites:
        pools = elig.pools_by_site.get(site.name, ())
        static = elig.reasons_by_site.get(site.name, ())
        # cost of the whole workload there, on the site's cheapest qualifying pool
        cost = Cost()
        if pools:
            watts = min(attributed_watts(cluster.pools[p], spec.resources) for p in pools)
            cost = rates[site.name].cost(watts * spec.replica_count)
        if static:
            verdicts.append(SiteVerdict(site.name, False, static, cost))
            continue
        if site.name in placed_sites:
            verdicts.append(SiteVerdict(site.name, True, (), cost))
            continue
        if elig.final_code is not None:
            final = Reason(elig.final_code, elig.final_reason, site.name)
            verdicts.append(SiteVerdict(site.name, False, (final,), cost))
            continue
        room = capacity_reasons(cluster, spec, site.name, pools)
        if not room and not placements:
            limited = spread_node_reason(cluster, spec, elig.per_node, site.name, elig.pools)
            room = () if limited is None else (limited,)
        verdicts.append(SiteVerdict(site.name, not room, room, cost))
    if placements:
        where = ", ".join(sorted(placed_sites))
        feasible = [v for v in verdicts if v.feasible]
        cheapest = min(feasible, key=lambda v: v.cost.energy_cny_per_hour) if feasible else None
        summary = f"placed in {where}: {len(placements)} replicas"
        if cheapest is not None and cheapest.site not in placed_sites:
            summary += f"; {cheapest.site} would cost {cheapest.cost.energy_cny_per_hour:.4f} CNY/h"
    elif elig.final_reason:
        summary = f"unschedulable: {elig.final_reason}"
    else:
        summary = reason or "pending: not tried yet"
    return Explanation(summary, tuple(verdicts))
