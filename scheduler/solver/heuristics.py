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

from scheduler.solver import greedy
from scheduler.solver.filters import eligibility_of
from scheduler.solver.objective import cheapest_site_order
from scheduler.solver.problem import PlacementResult, Problem, SolverParams, SolveStatus
from scheduler.solver.result import build_result


def solve_heuristic(problem: Problem, params: SolverParams) -> PlacementResult:
    started = time.monotonic()
    site_order: list[str] | None = None
    if params.policy == "first-fit":
        scorer: greedy.NodeScorer = greedy.first_fit
    elif params.policy == "best-fit":
        scorer = greedy.best_fit
    elif params.policy == "kube":
        scorer = greedy.least_allocated
    elif params.policy == "cheapest-first":
        site_order = cheapest_site_order(problem, params)
        scorer = greedy.site_ranked(site_order, problem.cluster.site_names, greedy.least_allocated)
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
