"""What deferrable work may choose from: whether time shifting applies, which work is
deferrable, and its possible start hours (what a run from each costs: ``solver.runs``)."""

from __future__ import annotations

import math
from collections.abc import Mapping

from scheduler.domain import Topology, WorkloadKind, WorkloadSpec
from scheduler.domain.forecast import HOUR_S, hour_of
from scheduler.solver.filters import Eligibility
from scheduler.solver.problem import Problem, SolverParams


def shifting_applies(problem: Problem, params: SolverParams) -> bool:
    """Whether the problem carries what placing work to start later needs, and it is on."""
    return (
        params.time_shifting
        and params.policy == "valley"
        and problem.now is not None
        and problem.forecast is not None
        and problem.timeline is not None
    )


def is_deferrable(spec: WorkloadSpec) -> bool:
    """API.md "Time": BATCH with a duration and a deadline. Valley shifts CPU and GPU work, a
    GANG whole (one site, one start for all its replicas); SPREAD work and work with a per-node
    limit of its own start now (the joint model does not keep their rules per hour)."""
    return (
        spec.kind == WorkloadKind.BATCH
        and spec.duration_s > 0
        and spec.deadline is not None
        and spec.topology != Topology.SPREAD
        and spec.max_replicas_per_node == 0
    )


def start_hours(
    problem: Problem, params: SolverParams, elig: Mapping[str, Eligibility]
) -> dict[str, tuple[int, ...]]:
    """Per deferrable workload of the problem, the absolute hours after the current one it may
    start at: it ends by its deadline, and within the timeline's horizon (whose capacity is
    known). Workloads with none start now, like all others."""
    if not shifting_applies(problem, params):
        return {}
    assert problem.now is not None and problem.timeline is not None
    first = hour_of(problem.now) + 1
    horizon_end = problem.timeline.end
    out: dict[str, tuple[int, ...]] = {}
    for w in problem.workloads:
        s = w.spec
        if not is_deferrable(s) or elig[w.id].final_reason:
            continue
        assert s.deadline is not None
        hours = math.ceil(s.duration_s / HOUR_S)
        latest = math.floor((s.deadline.timestamp() - s.duration_s) / HOUR_S)
        last = min(latest, horizon_end - hours)
        if last >= first:
            out[w.id] = tuple(range(first, last + 1))
    return out
