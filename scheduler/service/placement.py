"""``valley.v1.PlacementService``: thin handlers over the store and the scheduling loop."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import grpc

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler.domain import Scenario, Workload
from scheduler.service import convert, paging, validation
from scheduler.service.audit import audited
from scheduler.service.auth import Auth, Caller
from scheduler.service.errors import RpcFailure, check_deadline, streaming, unary
from scheduler.service.explaining import explain_workload
from scheduler.service.ports import Scheduling
from scheduler.service.quotas import admission
from scheduler.store import NotFoundError, Store

log = logging.getLogger(__name__)

MAX_ID = 253
WATCH_POLL_S = 0.25  # how often a quiet watch stream checks that its client is still there


def _possible_id(workload_id: str) -> bool:
    """Whether a stored workload could have this id (others are NOT_FOUND without a query)."""
    return 0 < len(workload_id) <= MAX_ID and "\x00" not in workload_id


def _utcnow() -> datetime:
    return datetime.now(UTC)


class PlacementServicer:
    def __init__(
        self,
        store: Store,
        scheduling: Scheduling,
        scenario: Scenario,
        *,
        max_watchers: int = 16,
        clock: Callable[[], datetime] = _utcnow,
        auth: Auth | None = None,
    ) -> None:
        self._store = store
        self._auth = auth or Auth()
        self._scheduling = scheduling
        self._scenario = scenario
        self._clock = clock
        self._watchers = threading.BoundedSemaphore(max_watchers)
        self._max_watchers = max_watchers
        # every watcher sends every event: the parts events share are encoded once
        self._events = convert.EventEncoder()

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
        validation.check_request_id(request.request_id)
        validation.check_count(len(request.workloads))
        if self._auth.enabled:
            per_tenant: Counter[str] = Counter()
            for i, m in enumerate(request.workloads):
                # a tenant's spec without a tenant is its own (the request hash then covers it)
                m.tenant = caller.scope(m.tenant, f"workloads[{i}].tenant")
                per_tenant[m.tenant] += 1
            for tenant, n in per_tenant.items():  # before validation: a flood costs little
                self._auth.take_rate(tenant, n)
        specs = [
            validation.check_spec(
                convert.spec_from_proto(m, f"workloads[{i}]"), self._scenario, f"workloads[{i}]"
            )
            for i, m in enumerate(request.workloads)
        ]
        digest = convert.request_hash(request) if request.request_id else ""
        check_deadline(context)  # validation of a large request took a while: still wanted?
        admit = admission(specs, self._auth.quotas) if self._auth.enabled else None
        self._events.requested(specs, request.workloads)  # the watchers' events carry them
        submitted = self._store.submit(
            request.request_id, digest, specs, self._clock(), admit=admit
        )
        if not submitted.created:
            return convert.submit_response(submitted.workloads)
        self._scheduling.submitted(submitted.workloads)
        return convert.accepted_response(request, submitted.workloads)

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
        if not self._watchers.acquire(blocking=False):
            raise RpcFailure(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"at most {self._max_watchers} watch streams at once; retry later",
            )
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
            self._watchers.release()

    @unary
    def ExplainWorkload(
        self, request: pb.ExplainWorkloadRequest, context: grpc.ServicerContext
    ) -> pb.Explanation:
        check_deadline(context)
        w = self._get(request.id, self._auth.caller(context))
        result, sites = explain_workload(w, self._scheduling.snapshot(), self._scheduling.params)
        return convert.explanation_to_proto(result, w.state, sites)
