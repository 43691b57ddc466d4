"""``valley.v1.OperatorService``: what operators do to the cluster (API.md, "service
OperatorService"). Every RPC needs the operator role when ``--auth`` is on, and is audited."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import grpc

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler.domain import DrainPlan, ValidationError, shorten
from scheduler.service import convert
from scheduler.service.audit import audited
from scheduler.service.auth import Auth
from scheduler.service.errors import RpcFailure, check_deadline, unary
from scheduler.service.ports import Scheduling
from scheduler.service.sites import summarize
from scheduler.service.validation import Violations
from scheduler.store import Store
from scheduler.store.base import NotLeaderError

MAX_NODES = 10_000  # nodes one request may name
DRAIN_WAIT_S = 30.0  # the longest a drain waits for the loop (the call's deadline if sooner)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class OperatorServicer:
    def __init__(
        self,
        store: Store,
        scheduling: Scheduling,
        auth: Auth | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._store = store
        self._scheduling = scheduling
        self._auth = auth or Auth()
        self._clock = clock

    @unary
    def CordonNodes(
        self, request: pb.CordonNodesRequest, context: grpc.ServicerContext
    ) -> pb.CordonNodesResponse:
        check_deadline(context)
        caller = self._auth.caller(context)
        caller.require_operator("CordonNodes")
        with audited(caller, "cordon" if request.cordoned else "uncordon") as entry:
            names = self._named(request.nodes, request.site)
            entry.ids = names
            self._store.set_cordoned(names, request.cordoned, self._clock())
            if not request.cordoned:
                self._scheduling.capacity_changed()
            return self._nodes_response(names)

    @unary
    def DrainNodes(
        self, request: pb.DrainNodesRequest, context: grpc.ServicerContext
    ) -> pb.MovePlan:
        check_deadline(context)
        caller = self._auth.caller(context)
        caller.require_operator("DrainNodes")
        action = "drain-dry-run" if request.dry_run else "drain"
        with audited(caller, action) as entry:
            names = self._named(request.nodes, request.site)
            entry.ids = names
            if not request.dry_run:
                self._store.set_cordoned(names, True, self._clock())
            plan = self._wait(
                lambda timeout: self._scheduling.drain(names, request.dry_run, timeout), context
            )
            return convert.move_plan_to_proto(plan)

    @unary
    def Rebalance(self, request: pb.RebalanceRequest, context: grpc.ServicerContext) -> pb.MovePlan:
        check_deadline(context)
        caller = self._auth.caller(context)
        caller.require_operator("Rebalance")
        action = "rebalance-dry-run" if request.dry_run else "rebalance"
        with audited(caller, action) as entry:
            found = Violations()
            if request.max_moves < 0:
                found.add(
                    (ValidationError("max_moves", f"must be >= 0 (got {request.max_moves})"),)
                )
            known = [s.name for s in self._scheduling.snapshot().scenario.sites]
            for i, site in enumerate(request.sites):
                if site not in known:
                    found.add((ValidationError(f"sites[{i}]", f"no site {shorten(site)!r}"),))
            found.check()
            plan = self._wait(
                lambda timeout: self._scheduling.rebalance(
                    request.dry_run, request.max_moves, list(request.sites), timeout
                ),
                context,
            )
            entry.ids = sorted({m.workload_id for m in plan.moves})
            return convert.move_plan_to_proto(plan)

    @staticmethod
    def _wait(ask: Callable[[float], DrainPlan], context: grpc.ServicerContext) -> DrainPlan:
        """What the loop answers ``ask(timeout)``, within the call's deadline."""
        left = context.time_remaining()
        timeout = DRAIN_WAIT_S if left is None else max(0.1, min(DRAIN_WAIT_S, left - 0.1))
        try:
            return ask(timeout)
        except NotLeaderError as e:
            raise RpcFailure(grpc.StatusCode.FAILED_PRECONDITION, str(e)) from None
        except TimeoutError:
            raise RpcFailure(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                "the scheduling loop did not get to it in time; it may still run",
            ) from None

    def _named(self, nodes: Iterable[str], site: str) -> list[str]:
        """The nodes a request names (its list, then the site's), each once, in that order;
        INVALID_ARGUMENT naming each unknown node and an unknown site."""
        listed = list(nodes)
        view = self._scheduling.snapshot()
        cluster = view.cluster
        found = Violations()
        if len(listed) > MAX_NODES:
            found.add((ValidationError("nodes", f"at most {MAX_NODES} nodes (got {len(listed)})"),))
            found.check()
        for i, name in enumerate(listed):
            if name not in cluster.index:
                found.add((ValidationError(f"nodes[{i}]", f"no node {shorten(name)!r}"),))
        sites = [s.name for s in view.scenario.sites]
        if site and site not in sites:
            found.add((ValidationError("site", f"no site {shorten(site)!r} (sites: {sites})"),))
        if not listed and not site:
            found.add((ValidationError("nodes", "name nodes, a site, or both"),))
        found.check()
        names = dict.fromkeys(listed)
        if site:
            si = sites.index(site)
            names.update(
                dict.fromkeys(
                    n for i, n in enumerate(cluster.node_names) if int(cluster.node_site[i]) == si
                )
            )
        return list(names)

    def _nodes_response(self, names: list[str]) -> pb.CordonNodesResponse:
        view = self._scheduling.snapshot()
        wanted = set(names)
        cordoned = self._store.cordoned_nodes()
        out = pb.CordonNodesResponse()
        summaries = summarize(view.cluster, view.hour, view.month, True, cordoned=cordoned)
        by_name = {n.name: n for s in summaries for n in s.nodes if n.name in wanted}
        for name in names:
            convert.node_to_proto(by_name[name], out.nodes.add())
        return out
