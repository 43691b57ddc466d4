"""ExplainWorkload in domain terms: the solver's per-site verdicts for a stored workload, against
the cluster as it is now."""

from __future__ import annotations

from scheduler.domain import Explanation, Workload, WorkloadState
from scheduler.service.ports import ClusterView
from scheduler.solver import PendingWorkload, Problem, SolverParams
from scheduler.solver.explain import explain
from scheduler.solver.filters import eligibility
from scheduler.solver.objective import site_rates


def explain_workload(
    w: Workload, view: ClusterView, params: SolverParams
) -> tuple[Explanation, tuple[str, ...]]:
    """The explanation and the sites the workload is placed in now."""
    placed = w.placements if w.state == WorkloadState.PLACED else ()
    problem = Problem(
        scenario=view.scenario,
        cluster=view.cluster,
        workloads=(PendingWorkload(w.id, w.spec),),
        hour=view.hour,
        month=view.month,
    )
    elig = eligibility(view.scenario, view.cluster, w.spec, params)
    result = explain(problem, w.spec, elig, placed, site_rates(problem), w.reason)
    if w.state in (WorkloadState.CANCELLED, WorkloadState.COMPLETED):
        where = sorted({p.site for p in w.placements})
        was = f"; it was placed in {', '.join(where)}" if where else ""
        result = Explanation(f"{w.state.name.lower()}{was}", result.sites)
    elif w.state == WorkloadState.UNSCHEDULABLE and w.reason:
        result = Explanation(f"unschedulable: {w.reason}", result.sites)
    return result, tuple(sorted({p.site for p in placed}))
