"""``valley.v1.PlacementService``: thin handlers over the store and the scheduling loop."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

import grpc

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler.domain import Scenario, ValidationError, Workload, WorkloadSpec
from scheduler.service import convert, paging, validation
from scheduler.service.audit import audited
from scheduler.service.auth import Auth, Caller
from scheduler.service.errors import RpcFailure, check_deadline, streaming, unary
from scheduler.service.explaining import explain_workload
from scheduler.service.planning import Planner
from scheduler.service.ports import Scheduling
from scheduler.service.quotas import admission
from scheduler.store import NotFoundError, Store

log = logging.getLogger(__name__)

MAX_ID = 253
WATCH_POLL_S = 0.25  # how often a quiet watch stream checks that its client is still there


def _possible_id(workload_id: str) -> bool:
    """Whether a stored workload could have this id (others are NOT_FOUND without a query)."""
    return 0 < len(workload_id) <= MAX_ID and "\x00" not in workload_id


def request_tenant(specs: Sequence[WorkloadSpec]) -> str:
    """The tenant a request's ``request_id`` belongs to: its first spec's (a request that mixes
    tenants is its first tenant's; one without specs is the empty tenant's). request_ids are
    scoped per tenant, so another tenant reusing one makes a new request."""
    return specs[0].tenant if specs else ""


def _utcnow() -> datetime:
    return datetime.now(UTC)


class WatchSlots:
    """Open watch streams, at most ``total`` and at most ``per_tenant`` per tenant (the watch's
    tenant filter: all tenants count as the tenant ""); beyond them RESOURCE_EXHAUSTED."""

    def __init__(self, total: int, per_tenant: int) -> None:
        self._total = total
        self._per_tenant = per_tenant
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}

    def acquire(self, tenant: str) -> None:
        with self._lock:
            mine = self._open.get(tenant, 0)
            if mine >= self._per_tenant:
                raise RpcFailure(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"at most {self._per_tenant} watch streams per tenant at once; retry later",
                )
            if sum(self._open.values()) >= self._total:
                raise RpcFailure(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"at most {self._total} watch streams at once; retry later",
                )
            self._open[tenant] = mine + 1

    def release(self, tenant: str) -> None:
        with self._lock:
            left = self._open[tenant] - 1
            if left:
                self._open[tenant] = left
            else:
                del self._open[tenant]


class PlacementServicer:
    def __init__(
        self,
        store: Store,
        scheduling: Scheduling,
        scenario: Scenario,
        *,
        max_watchers: int = 16,
        max_watchers_per_tenant: int = 8,
        clock: Callable[[], datetime] = _utcnow,
        auth: Auth | None = None,
    ) -> None:
        self._store = store
        self._auth = auth or Auth()
        self._scheduling = scheduling
        self._scenario = scenario
        self._clock = clock
        self._watchers = WatchSlots(max_watchers, max_watchers_per_tenant)
        # every watcher sends every event: the parts events share are encoded once
        self._events = convert.EventEncoder()
        self._planner = Planner(scheduling, store)

    def _get(self, workload_id: str, caller: Caller) -> Workload:
        """The stored workload; NOT_FOUND for any id that does not exist (empty included) and,
        exactly alike, for a workload the caller may not see."""
        if not _possible_id(workload_id):
            raise NotFoundError(workload_id[:64])
        w = self._store.get(workload_id)
        if not caller.sees(w.spec.tenant):
            raise NotFoundError(workload_id)
        return w

    @unary
    def SubmitWorkloads(
        self, request: pb.SubmitWorkloadsRequest, context: grpc.ServicerContext
    ) -> pb.SubmitWorkloadsResponse:
        caller = self._auth.caller(context)
        with audited(caller, "submit") as entry:
            response = self._submit(request, context, caller)
            entry.ids = [w.id for w in response.workloads]
        return response

    def _submit(
        self, request: pb.SubmitWorkloadsRequest, context: grpc.ServicerContext, caller: Caller
    ) -> pb.SubmitWorkloadsResponse:
        check_deadline(context)
        if self._auth.enabled:
            self._scope(request, caller, context.time_remaining())
        now = self._clock()
        specs = self._valid_specs(request, now)
        digest = convert.request_hash(request) if request.request_id else ""
        check_deadline(context)  # validation of a large request took a while: still wanted?
        admit = admission(specs, self._auth.quotas) if self._auth.enabled else None
        self._events.requested(specs, request.workloads)  # the watchers' events carry them
        submitted = self._store.submit(
            request.request_id,
            digest,
            specs,
            now,
            # a tenant's request_ids are its own; the operator's (and anyone's without --auth)
            # belong to the request's first tenant
            tenant=request_tenant(specs) if caller.operator else caller.tenant,
            admit=admit,
        )
        if not submitted.created:
            return convert.submit_response(submitted.workloads)
        self._scheduling.submitted(submitted.workloads)
        return convert.accepted_response(request, submitted.workloads)

    @unary
    def PlanWorkloads(
        self, request: pb.SubmitWorkloadsRequest, context: grpc.ServicerContext
    ) -> pb.SubmitWorkloadsResponse:
        """A dry run of ``SubmitWorkloads`` (``scheduler.service.planning``): validated, scoped
        to the caller's tenant, counted against its rate and refused over its resource quota
        as a submission would be; nothing stored."""
        check_deadline(context)
        caller = self._auth.caller(context)
        if self._auth.enabled:
            self._scope(request, caller, context.time_remaining())
        specs = self._valid_specs(request, self._clock())
        check_deadline(context)
        admit = admission(specs, self._auth.quotas) if self._auth.enabled else None
        planned = self._planner.plan(specs, context.time_remaining(), admit)
        return convert.submit_response(planned)

    def _scope(
        self, request: pb.SubmitWorkloadsRequest, caller: Caller, time_left_s: float | None
    ) -> None:
        """Give the caller's tenant to its specs without one (PERMISSION_DENIED for another
        tenant's) and take the request from each tenant's submission rate."""
        if len(request.workloads) > validation.MAX_WORKLOADS_PER_REQUEST:
            return  # refused by validation anyway: not walked, and it takes no tokens
        per_tenant: Counter[str] = Counter()
        for i, m in enumerate(request.workloads):
            # a tenant's spec without a tenant is its own (the request hash then covers it)
            m.tenant = caller.scope(m.tenant, f"workloads[{i}].tenant")
            per_tenant[m.tenant] += 1
        for tenant, n in per_tenant.items():  # before validation: a flood costs little
            self._auth.take_rate(tenant, n, time_left_s)

    def _valid_specs(self, request: pb.SubmitWorkloadsRequest, now: datetime) -> list[WorkloadSpec]:
        """The request's specs; raises ``ValidationErrors`` listing every violation."""
        found = validation.Violations()
        found.add(validation.request_id_violations(request.request_id))
        found.add(validation.count_violations(len(request.workloads)))
        specs = []
        # past the limit the request is refused anyway: its first specs' faults are enough
        for i, m in enumerate(request.workloads[: validation.MAX_WORKLOADS_PER_REQUEST]):
            field = f"workloads[{i}]"
            try:
                spec = convert.spec_from_proto(m, field)
            except ValidationError as e:
                found.add((e,))
                continue
            found.add(validation.spec_violations(spec, self._scenario, field))
            found.add(validation.deadline_violations(spec, now, field))
            specs.append(spec)
        found.check()
        return specs

    @unary
    def GetWorkload(
        self, request: pb.GetWorkloadRequest, context: grpc.ServicerContext
    ) -> pb.Workload:
        return convert.workload_to_proto(self._get(request.id, self._auth.caller(context)))

    @unary
    def ListWorkloads(
        self, request: pb.ListWorkloadsRequest, context: grpc.ServicerContext
    ) -> pb.ListWorkloadsResponse:
        check_deadline(context)
        validation.check_text(request.tenant, "tenant")
        tenant = self._auth.caller(context).scope(request.tenant, "tenant")
        size = paging.page_size(request.page_size)
        states = convert.states_from_proto(request.states)
        after = paging.decode(request.page_token, tenant, states)
        page = self._store.list_workloads(tenant, states, after, size)
        token = "" if page.next_after is None else paging.encode(page.next_after, tenant, states)
        return convert.list_response(page.workloads, token)

    @unary
    def CancelWorkload(
        self, request: pb.CancelWorkloadRequest, context: grpc.ServicerContext
    ) -> pb.Workload:
        check_deadline(context)
        caller = self._auth.caller(context)
        with audited(caller, "cancel", [request.id[:MAX_ID]]):
            if not caller.operator:
                self._get(request.id, caller)  # NOT_FOUND, as for an unknown id, if not its own
            elif not _possible_id(request.id):
                raise NotFoundError(request.id[:64])
            change = self._store.cancel(request.id, self._clock())
        if change.changed:
            self._scheduling.state_changed(change.workload, change.previous_state)
        return convert.workload_to_proto(change.workload)

    @streaming
    def WatchWorkloads(
        self, request: pb.WatchWorkloadsRequest, context: grpc.ServicerContext
    ) -> Iterator[bytes]:  # encoded WorkloadEvent messages
        for events in self._watch(request, context):
            yield from events

    @streaming
    def WatchWorkloadBatches(
        self, request: pb.WatchWorkloadsRequest, context: grpc.ServicerContext
    ) -> Iterator[bytes]:  # encoded WorkloadEventBatch messages
        # grpc's threaded server sends a stream's messages one at a time, each waiting for the
        # last to be handed over: thousands of events a second reach a client only in batches
        for events in self._watch(request, context):
            yield from convert.event_batches(events)

    def _watch(
        self, request: pb.WatchWorkloadsRequest, context: grpc.ServicerContext
    ) -> Iterator[list[bytes]]:
        """The encoded events of a watch stream (as ``convert.event_to_proto`` would encode
        them) that ``request`` selects, in commit order, in the groups they are taken from the
        subscription: everything published since the last group, up to 1,000 events."""
        validation.check_text(request.tenant, "tenant")
        tenant = self._auth.caller(context).scope(request.tenant, "tenant")
        states = frozenset(convert.states_from_proto(request.states))
        self._watchers.acquire(tenant)
        try:
            with self._store.subscribe() as sub:
                context.add_callback(sub.close)
                # initial metadata tells the client the stream is open: every change committed
                # from now on will be sent
                context.send_initial_metadata(())
                encode = self._events.encode
                while context.is_active():
                    events = sub.get_batch(WATCH_POLL_S)
                    if not events:
                        if sub.lagged:
                            raise RpcFailure(
                                grpc.StatusCode.RESOURCE_EXHAUSTED,
                                "this watcher fell too far behind; open a new stream",
                            )
                        if sub.closed:
                            return  # the server is draining
                        continue
                    if tenant or states:
                        events = [
                            e
                            for e in events
                            if (not tenant or e.workload.spec.tenant == tenant)
                            and (not states or e.workload.state in states)
                        ]
                    if events:
                        # the bytes of convert.event_to_proto(event)
                        yield [encode(e) for e in events]
        finally:
            self._watchers.release(tenant)

    @unary
    def ExplainWorkload(
        self, request: pb.ExplainWorkloadRequest, context: grpc.ServicerContext
    ) -> pb.Explanation:
        check_deadline(context)
        w = self._get(request.id, self._auth.caller(context))
        preemptions = self._store.preemptions_of(w.id)
        snapshot = self._scheduling.snapshot()
        result, sites = explain_workload(w, snapshot, self._scheduling.params, preemptions)
        return convert.explanation_to_proto(result, w.state, sites)
