"""The peers: the algorithms other schedulers use, behind the same ``solve()`` signature.

- ``first-fit``: the first node (site order of the scenario, then node order) that fits.
- ``best-fit``: the node left with the least remaining resources.
- ``kube``: kube-scheduler style: filter (SLO, residency, GPU model, fit), then score with
  LeastAllocated, one workload at a time in arrival order.
- ``cheapest-first``: Karmada style: the site with the cheapest energy and carbon of the hour
  first, overflow to the next; LeastAllocated within a site.
"""

from __future__ import annotations

import time

import numpy as np

from scheduler.domain import Cluster, Resources
from scheduler.solver import greedy
from scheduler.solver.filters import eligibility_of
from scheduler.solver.objective import carbon_price, site_rates
from scheduler.solver.problem import PlacementResult, Problem, SolverParams, SolveStatus
from scheduler.solver.result import build_result


def _site_rank_scorer(
    problem: Problem, params: SolverParams, inner: greedy.NodeScorer
) -> greedy.NodeScorer:
    rates = site_rates(problem)
    cprice = carbon_price(problem, params)
    order = sorted(problem.scenario.site_names, key=lambda s: rates[s].money_per_it_watt(cprice))
    rank = np.asarray([order.index(s) for s in problem.cluster.site_names], dtype=np.float64)

    def score(cluster: Cluster, nodes: greedy.IntArray, r: Resources) -> greedy.FloatArray:
        # inner scores are shares in [-4, 4]; a site rank step of 100 dominates them
        return rank[cluster.node_site[nodes]] * 100.0 + inner(cluster, nodes, r)

    return score


def cheapest_site_order(problem: Problem, params: SolverParams) -> list[str]:
    rates = site_rates(problem)
    cprice = carbon_price(problem, params)
    return sorted(problem.scenario.site_names, key=lambda s: rates[s].money_per_it_watt(cprice))


def solve_heuristic(problem: Problem, params: SolverParams) -> PlacementResult:
    started = time.perf_counter()
    site_order: list[str] | None = None
    if params.policy == "first-fit":
        scorer: greedy.NodeScorer = greedy.first_fit
    elif params.policy == "best-fit":
        scorer = greedy.best_fit
    elif params.policy == "kube":
        scorer = greedy.least_allocated
    elif params.policy == "cheapest-first":
        scorer = _site_rank_scorer(problem, params, greedy.least_allocated)
        site_order = cheapest_site_order(problem, params)
    else:
        raise ValueError(f"not a heuristic policy: {params.policy}")
    cluster = problem.cluster.copy()
    index = greedy.NodeIndex(cluster)
    elig = eligibility_of(
        problem.scenario, cluster, ((w.id, w.spec) for w in problem.workloads), params
    )
    placements = {}
    for w in problem.workloads:
        e = elig[w.id]
        if e.final_reason:
            continue
        placed = greedy.place_workload(
            cluster, problem.scenario, index, w.spec, e, scorer, site_order
        )
        if placed is not None:
            placements[w.id] = placed
    return build_result(problem, params, placements, elig, cluster, SolveStatus.HEURISTIC, started)
