"""ExplainWorkload in domain terms: the solver's per-site verdicts for a stored workload, against
the cluster as it is now, and who preempted it (or whom it displaced)."""

from __future__ import annotations

from collections.abc import Sequence

from scheduler.domain import Explanation, Workload, WorkloadState
from scheduler.service.ports import ClusterView
from scheduler.solver import PendingWorkload, Problem, SolverParams
from scheduler.solver.explain import explain
from scheduler.solver.filters import eligibility
from scheduler.solver.objective import carbon_price, rates_over_runs, site_rates, spec_rates
from scheduler.store import PreemptionRecord

SHOWN_VICTIMS = 5  # displaced workloads named in a preemptor's summary; the rest are counted


def explain_workload(
    w: Workload,
    view: ClusterView,
    params: SolverParams,
    preemptions: Sequence[PreemptionRecord] = (),
) -> tuple[Explanation, tuple[str, ...]]:
    """The explanation and the sites the workload is placed in now; ``preemptions`` (those it
    took part in) name who preempted it, or whom it displaced."""
    placed = w.placements if w.state == WorkloadState.PLACED else ()
    problem = Problem(
        scenario=view.scenario,
        cluster=view.cluster,
        workloads=(PendingWorkload(w.id, w.spec),),
        hour=view.hour,
        month=view.month,
        now=view.now,
        forecast=view.forecast,
    )
    elig = eligibility(view.scenario, view.cluster, w.spec, params)
    # each site's cost over a run like the workload's from now, as placing it counts it
    runs = rates_over_runs(problem, carbon_price(problem, params), (w.spec,))
    rates = spec_rates(problem, w.spec, site_rates(problem), runs)
    result = explain(problem, w.spec, elig, placed, rates, w.reason)
    if w.state in (WorkloadState.CANCELLED, WorkloadState.COMPLETED):
        where = sorted({p.site for p in w.placements})
        was = f"; it was placed in {', '.join(where)}" if where else ""
        result = Explanation(f"{w.state.name.lower()}{was}", result.sites)
    elif w.state == WorkloadState.UNSCHEDULABLE and w.reason:
        result = Explanation(f"unschedulable: {w.reason}", result.sites)
    note = preemption_note(w, preemptions, result.summary)
    if note:
        result = Explanation(f"{result.summary}; {note}", result.sites)
    return result, tuple(sorted({p.site for p in placed}))


def preemption_note(w: Workload, preemptions: Sequence[PreemptionRecord], summary: str = "") -> str:
    """Who last preempted ``w`` (and how often it was), and whom it displaced, as far as
    ``summary`` does not say it already; "" if neither."""
    was = [r for r in preemptions if r.workload_id == w.id]
    displaced = [r for r in preemptions if r.preemptor_id == w.id]
    notes = []
    if was and f"preempted by {was[-1].preemptor_id} " not in summary:
        last = was[-1]
        times = f" ({len(was)} times)" if len(was) > 1 else ""
        notes.append(
            f"preempted by {last.preemptor_id} (priority {last.preemptor_priority}) at "
            f"{last.time:%Y-%m-%d %H:%M:%S} UTC{times}"
        )
    if displaced:
        named = ", ".join(
            f"{r.workload_id} (priority {r.priority})" for r in displaced[:SHOWN_VICTIMS]
        )
        more = len(displaced) - SHOWN_VICTIMS
        notes.append(f"it displaced {named}" + (f" and {more} more" if more > 0 else ""))
    return "; ".join(notes)
