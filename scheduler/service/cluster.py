"""``valley.v1.ClusterService``: the sites with capacity, allocation and energy figures now."""

from __future__ import annotations

import grpc

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler.service import convert
from scheduler.service.auth import Auth
from scheduler.service.errors import check_deadline, unary
from scheduler.service.ports import Scheduling
from scheduler.service.sites import summarize
from scheduler.store import Store


class ClusterServicer:
    def __init__(
        self, scheduling: Scheduling, auth: Auth | None = None, store: Store | None = None
    ) -> None:
        self._scheduling = scheduling
        self._auth = auth or Auth()
        self._store = store  # the cordoned nodes, when node detail is asked for

    @unary
    def ListSites(
        self, request: pb.ListSitesRequest, context: grpc.ServicerContext
    ) -> pb.ListSitesResponse:
        check_deadline(context)
        if request.include_nodes:
            self._auth.caller(context).require_operator("include_nodes (node-level detail)")
        view = self._scheduling.snapshot()
        cordoned = (
            self._store.cordoned_nodes()
            if request.include_nodes and self._store is not None
            else frozenset()
        )
        reserved = getattr(view, "reserved_cores", None)
        sites = summarize(
            view.cluster, view.hour, view.month, request.include_nodes, reserved, cordoned
        )
        latency = {s.name: dict(s.latency_ms) for s in view.scenario.sites}
        return convert.sites_response(
            sites, view.hour, view.month, latency, getattr(view, "reserved_from", None)
        )
