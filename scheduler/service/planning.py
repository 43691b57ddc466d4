"""``PlacementService.PlanWorkloads``: a dry run of a submission on the cluster as it is now.

The plan is the policy's own answer (the same ``solve()`` a cycle runs, on a copy of the
cluster the loop last committed, with its reservations ahead, at the loop's instant) for the
request's workloads alone (deferrable work gets the start a cycle would reserve for it):
workloads still pending from others are not in it, and nothing is stored or reserved, so a
submission right after may still land elsewhere. It runs in the server's process, one plan at a
time, with at most ``PLAN_TIME_LIMIT_S`` of solving and ``MAX_PLAN_REPLICAS`` replicas; a
plan waits at most ``PLAN_WAIT_S`` for the one before it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import replace

import grpc

from scheduler.domain import Cost, ValidationError, Workload, WorkloadSpec, WorkloadState
from scheduler.service.errors import RpcFailure
from scheduler.service.ports import Scheduling
from scheduler.solver import PendingWorkload, Problem, solve, without_room_on
from scheduler.store import Admit, Store

PLAN_TIME_LIMIT_S = 1.0
MAX_PLAN_REPLICAS = 10_000
PLAN_WAIT_S = 5.0


class Planner:
    """Plans one request at a time against the loop's latest cluster."""

    def __init__(self, scheduling: Scheduling, store: Store) -> None:
        self._scheduling = scheduling
        self._store = store
        self._turn = threading.Lock()

    def plan(
        self,
        specs: Sequence[WorkloadSpec],
        time_left_s: float | None,
        admit: Admit | None = None,
    ) -> list[Workload]:
        """``specs`` as they would end this cycle (id empty): PLACED with placements and cost
        (deferrable work at the start the cycle would reserve), else PENDING or UNSCHEDULABLE
        with the reason. ``admit`` (the submission's quota check): its refusal is raised, as
        the submission would be refused."""
        replicas = sum(s.replica_count for s in specs)
        if replicas > MAX_PLAN_REPLICAS:
            raise ValidationError(
                "workloads",
                f"a plan covers at most {MAX_PLAN_REPLICAS} replicas (got {replicas}); "
                "plan part of it",
            )
        if admit is not None:
            refused = admit(self._store.held_by({s.tenant for s in specs}))
            if refused is not None:
                raise refused
        wait = PLAN_WAIT_S if time_left_s is None else max(0.0, min(PLAN_WAIT_S, time_left_s))
        if not self._turn.acquire(timeout=wait):
            raise RpcFailure(
                grpc.StatusCode.RESOURCE_EXHAUSTED, "another plan is running; retry later"
            )
        try:
            return self._plan(specs, time_left_s)
        finally:
            self._turn.release()

    def _plan(self, specs: Sequence[WorkloadSpec], time_left_s: float | None) -> list[Workload]:
        view = self._scheduling.snapshot()
        ids = [f"plan-{i}" for i in range(len(specs))]
        cluster, timeline = without_room_on(
            view.cluster, view.timeline, self._store.cordoned_nodes()
        )
        problem = Problem(
            scenario=view.scenario,
            cluster=cluster,
            workloads=tuple(PendingWorkload(i, s) for i, s in zip(ids, specs, strict=True)),
            hour=view.hour,
            month=view.month,
            now=view.now,
            forecast=view.forecast,
            timeline=timeline,
        )
        limit = min(self._scheduling.params.time_limit_s, PLAN_TIME_LIMIT_S)
        if time_left_s is not None:
            limit = max(0.05, min(limit, time_left_s / 2))  # the answer must still get back
        params = replace(self._scheduling.params, time_limit_s=limit, num_workers=1)
        result = solve(problem, params, deadline=time.monotonic() + limit)
        out = []
        for wid, spec in zip(ids, specs, strict=True):
            placed = result.placements.get(wid)
            if placed:
                cost = result.costs.get(wid, Cost())
                out.append(Workload("", spec, WorkloadState.PLACED, tuple(placed), cost=cost))
                continue
            u = result.unplaced.get(wid)
            state = WorkloadState.UNSCHEDULABLE if u and u.final else WorkloadState.PENDING
            out.append(Workload("", spec, state, reason=u.summary if u else "does not fit now"))
        return out
