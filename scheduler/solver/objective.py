"""The objective in CNY per hour, recomputed from a placement alone.

objective = energy + priced carbon + latency weight of services + headroom penalty
            + penalty of every unplaced workload that could be placed (not UNSCHEDULABLE)
            + rack spread: per replica of a service that shares a rack with another of it

Every policy's result is scored by this one function, so the numbers compare.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence

import numpy as np

from scheduler.domain import (
    Cluster,
    Cost,
    ReplicaPlacement,
    SiteRates,
    WorkloadSpec,
    attributed_watts,
    node_it_watts,
)
from scheduler.domain.forecast import hour_of
from scheduler.solver.filters import eligibility
from scheduler.solver.problem import Breakdown, Problem, SolverParams


def carbon_price(problem: Problem, params: SolverParams) -> float:
    if params.carbon_price_cny_per_tonne is not None:
        return params.carbon_price_cny_per_tonne
    return problem.scenario.carbon_price_cny_per_tonne


def site_rates(problem: Problem) -> dict[str, SiteRates]:
    """Every site's rates of the problem's hour: the forecast's for ``now`` when it has one."""
    if problem.forecast is not None and problem.now is not None:
        h = hour_of(problem.now)
        return {name: problem.forecast.rates(name, h) for name in problem.scenario.site_names}
    return {s.name: SiteRates.of(s, problem.hour, problem.month) for s in problem.scenario.sites}


def cheapest_site_order(problem: Problem, params: SolverParams) -> list[str]:
    """The scenario's sites, cheapest energy and priced carbon per IT watt of the hour first."""
    rates = site_rates(problem)
    cprice = carbon_price(problem, params)
    return sorted(problem.scenario.site_names, key=lambda s: rates[s].money_per_it_watt(cprice))


PRIORITY_LEVELS = 8


def unplaced_penalties(problem: Problem, params: SolverParams) -> dict[str, float]:
    """CNY/h for leaving each workload of the problem unplaced: per replica, times
    ``priority_factor`` per rank of its priority among the problem's distinct priorities."""
    distinct = sorted(set(problem.priorities) | {w.spec.priority for w in problem.workloads})
    # at most PRIORITY_LEVELS levels: many distinct priorities share levels evenly, which keeps
    # the penalties finite and the solver's integers in range
    top = PRIORITY_LEVELS - 1
    if len(distinct) > PRIORITY_LEVELS:
        ranks = {p: round(i * top / (len(distinct) - 1)) for i, p in enumerate(distinct)}
    else:
        ranks = {p: i for i, p in enumerate(distinct)}
    return {
        w.id: params.unplaced_cny_per_replica_hour
        * w.spec.replica_count
        * params.priority_factor ** ranks[w.spec.priority]
        for w in problem.workloads
    }


def apply_placements(
    cluster: Cluster, problem: Problem, placements: Mapping[str, tuple[ReplicaPlacement, ...]]
) -> Cluster:
    """A copy of ``cluster`` with the placements allocated; raises CapacityError if any node or
    GPU would go over capacity."""
    out = cluster.copy()
    specs = {w.id: w.spec for w in problem.workloads}
    for wid, reps in placements.items():
        r = specs[wid].resources
        for rp in reps:
            out.allocate(out.index[rp.node], r, rp.gpu_indices)
    return out


def evaluate(
    problem: Problem, placements: Mapping[str, tuple[ReplicaPlacement, ...]], params: SolverParams
) -> Breakdown:
    """Score a placement of ``problem`` from scratch (running work included)."""
    return evaluate_state(
        problem, apply_placements(problem.cluster, problem, placements), placements, params
    )


def evaluate_state(
    problem: Problem,
    after: Cluster,
    placements: Mapping[str, tuple[ReplicaPlacement, ...]],
    params: SolverParams,
    never_fits: Collection[str] | None = None,
) -> Breakdown:
    """Score a placement given the cluster state it leads to (``after``). ``never_fits``: the
    workloads that can never fit as specified, if the caller knows them already."""
    rates = site_rates(problem)
    cprice = carbon_price(problem, params)
    watts = node_it_watts(after)
    energy = carbon = carbon_cny = power = headroom = 0.0
    for si, site in enumerate(problem.scenario.sites):
        on_site = after.node_site == si
        cost = rates[site.name].cost(float(watts[on_site].sum()))
        energy += cost.energy_cny_per_hour
        carbon += cost.carbon_kg_per_hour
        carbon_cny += cost.carbon_kg_per_hour * cprice / 1000.0
        power += cost.power_watts
        headroom += headroom_penalty(after, on_site, params)
    specs = {w.id: w.spec for w in problem.workloads}
    latency = sum(
        params.latency_cny_per_ms_hour * rp.latency_ms
        for wid, reps in placements.items()
        if specs[wid].is_service
        for rp in reps
    )
    # a workload that can never fit as specified (UNSCHEDULABLE) is left out by its spec, not
    # by the decision: no penalty, so the objective and its bound compare placements only
    if never_fits is None:
        never_fits = {
            w.id
            for w in problem.workloads
            if w.id not in placements
            and eligibility(problem.scenario, problem.cluster, w.spec, params).final_reason
        }
    penalties = unplaced_penalties(problem, params)
    unplaced = sum(
        p for wid, p in penalties.items() if wid not in placements and wid not in never_fits
    )
    racks = params.rack_spread_cny_per_replica_hour * sum(
        rack_sharing(after, reps)
        for wid, reps in placements.items()
        if specs[wid].is_service and len(reps) > 1
    )
    return Breakdown(energy, carbon, carbon_cny, latency, headroom, unplaced, power, racks)


def rack_sharing(cluster: Cluster, reps: Sequence[ReplicaPlacement]) -> int:
    """How many of a workload's replicas share a rack with another of them: the replicas less
    the racks they use (a node outside every rack counts as a rack of its own)."""
    index = cluster.index
    return len(reps) - len({int(cluster.node_rack[index[rp.node]]) for rp in reps})


def headroom_penalty(cluster: Cluster, on_site: np.ndarray, params: SolverParams) -> float:
    cap = float(cluster.cap_cpu[on_site].sum()) / 1000.0
    used = cap - float(cluster.free_cpu[on_site].sum()) / 1000.0
    return params.headroom_cny_per_core_hour * max(0.0, used - params.headroom_target * cap)


def workload_cost(
    problem: Problem,
    spec: WorkloadSpec,
    placements: tuple[ReplicaPlacement, ...],
    rates: Mapping[str, SiteRates],
) -> Cost:
    """What a placed workload costs per hour: the attributed power of each replica (its dynamic
    power plus its CPU share of the node's idle power) at its site's price and intensity."""
    cluster = problem.cluster
    per_pool = Counter(int(cluster.node_pool[cluster.index[rp.node]]) for rp in placements)
    total = Cost()
    for pi, count in per_pool.items():
        pool = cluster.pools[pi]
        total = total + rates[pool.site].cost(attributed_watts(pool, spec.resources) * count)
    return total
