"""The objective in CNY per hour, recomputed from a placement alone.

objective = energy + priced carbon + latency weight of services + headroom penalty
            + penalty of every unplaced workload that could be placed (not UNSCHEDULABLE)
            + rack spread: per replica of a service that shares a rack with another of it

Energy and carbon are the cluster's power at the current hour's rates, except where the problem
carries a clock and a forecast (``runs.priced_over_runs``): there each replica placed now has its
dynamic power counted at the mean rates of its run (``runs.run_seconds``: its duration, or a
day for work without one), per hour of that run. A placement lasts for hours; pricing it at the
hour it happens to be placed in would put a service arriving at night, when the dear site's
valley tariff undercuts the cheap site's flat one, in the dear site for good.

Every policy's result is scored by this one function, so the numbers compare.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence

import numpy as np

from scheduler.domain import (
    Cluster,
    Cost,
    ReplicaPlacement,
    Resources,
    SiteRates,
    WorkloadSpec,
    attributed_watts,
    dynamic_watts,
    node_it_watts,
)
from scheduler.domain.forecast import hour_of
from scheduler.solver.filters import eligibility
from scheduler.solver.problem import Breakdown, Problem, SolverParams
from scheduler.solver.runs import RunRates, priced_over_runs, run_seconds


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
    later: Collection[str] = (),
) -> Breakdown:
    """Score a placement given the cluster state it leads to (``after``). ``never_fits``: the
    workloads that can never fit as specified, if the caller knows them already; ``later``:
    the workloads of ``placements`` that start later, so are not in ``after`` (the caller
    prices their runs)."""
    rates = site_rates(problem)
    cprice = carbon_price(problem, params)
    watts = node_it_watts(after)
    energy, carbon = run_priced(problem, cprice, rates, placements, later)
    carbon_cny = carbon * cprice / 1000.0
    power = headroom = 0.0
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


def run_priced(
    problem: Problem,
    cprice: float,
    hourly: Mapping[str, SiteRates],
    placements: Mapping[str, tuple[ReplicaPlacement, ...]],
    later: Collection[str] = (),
) -> tuple[float, float]:
    """Energy CNY and carbon kg per hour that count the replicas placed now (``placements``
    but ``later``) at the mean rates of their runs rather than the current hour's (``hourly``,
    as ``site_rates`` gives them): each replica's dynamic power times the difference of the
    two (module docstring). Zero where the problem is not priced over runs."""
    if not priced_over_runs(problem) or not placements:
        return 0.0, 0.0
    specs = {w.id: w.spec for w in problem.workloads}
    now_placed = [(specs[wid], reps) for wid, reps in placements.items() if wid not in later]
    runs = rates_over_runs(problem, cprice, (spec for spec, _ in now_placed))
    if runs is None or not now_placed or problem.now is None:
        return 0.0, 0.0
    current = {
        site: (r.pue / 1000.0 * r.price_cny_per_kwh, r.pue / 1000.0 * r.carbon_kg_per_kwh)
        for site, r in hourly.items()
    }
    now_s = problem.now.timestamp()
    cluster = problem.cluster
    # a replica's dynamic power is linear in its CPU and GPU demand, per pool: sum both per
    # (run seconds, pool) in one pass (this runs in every evaluation of a packing, at 50k
    # replicas too), then price each sum once
    index = cluster.index
    runs_of: dict[int, int] = {}
    run_of: list[int] = []
    nodes: list[int] = []
    cpu: list[int] = []
    gpu: list[int] = []
    for spec, reps in now_placed:
        n = len(reps)
        run_of.extend([runs_of.setdefault(run_seconds(spec), len(runs_of))] * n)
        cpu.extend([spec.resources.cpu_millis] * n)
        gpu.extend([spec.resources.gpu_demand_millis] * n)
        nodes.extend([index[rp.node] for rp in reps])
    n_pools = len(cluster.pools)
    flat = np.asarray(run_of, dtype=np.int64) * n_pools + cluster.node_pool[nodes]
    size = len(runs_of) * n_pools
    cpu_sum = np.bincount(flat, weights=np.asarray(cpu, dtype=float), minlength=size)
    gpu_sum = np.bincount(flat, weights=np.asarray(gpu, dtype=float), minlength=size)
    seconds_of = list(runs_of)
    energy = carbon = 0.0
    for f in np.flatnonzero(cpu_sum + gpu_sum).tolist():
        k, pi = divmod(f, n_pools)
        pool = cluster.pools[pi]
        run = runs.cost(pool.site, now_s, seconds_of[k])
        demand = Resources(int(cpu_sum[f]), 0, gpu_millis=int(gpu_sum[f]))
        watts = dynamic_watts(pool, demand)
        energy += watts * (run.energy_cny - current[pool.site][0])
        carbon += watts * (run.carbon_kg - current[pool.site][1])
    return energy, carbon


def rack_sharing(cluster: Cluster, reps: Sequence[ReplicaPlacement]) -> int:
    """How many of a workload's replicas share a rack with another of them: the replicas less
    the racks they use (a node outside every rack counts as a rack of its own)."""
    index = cluster.index
    return len(reps) - len({int(cluster.node_rack[index[rp.node]]) for rp in reps})


def headroom_penalty(cluster: Cluster, on_site: np.ndarray, params: SolverParams) -> float:
    cap = float(cluster.cap_cpu[on_site].sum()) / 1000.0
    used = cap - float(cluster.free_cpu[on_site].sum()) / 1000.0
    return params.headroom_cny_per_core_hour * max(0.0, used - params.headroom_target * cap)


def rates_over_runs(
    problem: Problem, cprice: float, specs: Iterable[WorkloadSpec]
) -> RunRates | None:
    """The forecast's rates for runs of ``specs`` from now, where the problem is priced over
    runs (else None): for ``spec_rates``."""
    if not priced_over_runs(problem):
        return None
    return RunRates.from_now(problem, cprice, max((run_seconds(s) for s in specs), default=0))


def spec_rates(
    problem: Problem,
    spec: WorkloadSpec,
    hourly: Mapping[str, SiteRates],
    runs: RunRates | None,
) -> Mapping[str, SiteRates]:
    """Per site, the rates work of ``spec`` placed now is priced at: the mean rates of its run
    (``runs``, from ``rates_over_runs``), else the hour's (``hourly``)."""
    if runs is None or problem.now is None:
        return hourly
    now_s, seconds = problem.now.timestamp(), run_seconds(spec)
    return {site: runs.rates(site, now_s, seconds) for site in hourly}


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
