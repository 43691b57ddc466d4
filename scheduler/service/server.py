"""The gRPC server factory: Valley's two services, the standard health service and reflection.

``create_server(config)`` binds (port 0 picks a free one, for tests) and returns the server and
the bound port; the caller starts it, and ``drain`` stops it gracefully: health NOT_SERVING,
watch streams ended, in-flight RPCs given ``grace`` seconds.

Requests are parsed by our own handlers rather than the generated ``add_*_to_server``: grpcio
answers a request it cannot parse with INTERNAL, and nothing a client sends may produce INTERNAL,
so an unparseable message reaches the handler as ``BadRequest`` and becomes INVALID_ARGUMENT.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler.domain import Scenario
from scheduler.service.auth import Auth, AuthInterceptor
from scheduler.service.cluster import ClusterServicer
from scheduler.service.errors import BadRequest
from scheduler.service.operator import OperatorServicer
from scheduler.service.placement import PlacementServicer
from scheduler.service.ports import Scheduling
from scheduler.service.quotas import RefusalHolds
from scheduler.service.tls import TlsFiles, server_credentials
from scheduler.store import Store

log = logging.getLogger(__name__)

PLACEMENT_SERVICE = pb.DESCRIPTOR.services_by_name["PlacementService"]
CLUSTER_SERVICE = pb.DESCRIPTOR.services_by_name["ClusterService"]
OPERATOR_SERVICE = pb.DESCRIPTOR.services_by_name["OperatorService"]
SERVICE_NAMES = (PLACEMENT_SERVICE.full_name, CLUSTER_SERVICE.full_name, OPERATOR_SERVICE.full_name)
MAX_MESSAGE_BYTES = 32 * 1024 * 1024  # 1,000 specs with labels fit easily


@dataclass(frozen=True)
class ServerLimits:
    """What one server takes on at once, and how long its connections live.

    Each open watch stream holds a worker thread: ``max_watchers`` in all, at most
    ``max_watchers_per_tenant`` for one tenant (the watch's tenant filter; all tenants count as
    the tenant ""), so that one client cannot lock every other out. A refusal over a tenant's
    submission rate is held a while (``scheduler.service.quotas``), each hold a thread: at most
    ``max_held_refusals`` (and half the threads watchers leave) in all, and
    ``max_held_refusals_per_tenant`` of one tenant. RPCs beyond
    ``max_concurrent_rpcs`` (running or waiting for a thread) answer RESOURCE_EXHAUSTED.
    Keepalive pings keep long watch streams open through NATs and load balancers and find dead
    peers; ``max_connection_age_s`` closes a connection (after ``max_connection_age_grace_s``
    for its calls to finish) so that clients reconnect and spread over the servers behind a
    load balancer; 0 turns it off."""

    max_workers: int = 128
    max_watchers: int = 48
    max_watchers_per_tenant: int = 8
    max_held_refusals: int = 32
    max_held_refusals_per_tenant: int = 16
    max_concurrent_rpcs: int = 1000
    keepalive_time_s: float = 30.0
    keepalive_timeout_s: float = 10.0
    min_client_ping_interval_s: float = 10.0  # clients may ping this often, even without calls
    max_connection_age_s: float = 3600.0
    max_connection_age_grace_s: float = 60.0

    def __post_init__(self) -> None:
        if self.max_workers < 2:
            raise ValueError("max_workers must be >= 2")
        if not 0 <= self.max_watchers < self.max_workers:
            raise ValueError("max_watchers must be in 0..max_workers-1 (unary RPCs need a thread)")
        if self.max_watchers_per_tenant < 0 or self.max_concurrent_rpcs < 1:
            raise ValueError("max_watchers_per_tenant must be >= 0, max_concurrent_rpcs >= 1")
        if self.max_held_refusals < 0 or self.max_held_refusals_per_tenant < 0:
            raise ValueError("max_held_refusals and max_held_refusals_per_tenant must be >= 0")
        times = (
            self.keepalive_time_s,
            self.keepalive_timeout_s,
            self.min_client_ping_interval_s,
            self.max_connection_age_s,
            self.max_connection_age_grace_s,
        )
        if min(times) < 0:
            raise ValueError("keepalive and connection age times must be >= 0")

    def options(self) -> list[tuple[str, int]]:
        """The grpc server options for these limits (message sizes included)."""
        ms = 1000
        options = [
            ("grpc.so_reuseport", 0),  # a second server on the same port must fail, not share
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", int(self.keepalive_time_s * ms)),
            ("grpc.keepalive_timeout_ms", int(self.keepalive_timeout_s * ms)),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.http2.min_ping_interval_without_data_ms", int(self.keepalive_time_s * ms)),
            (
                "grpc.http2.min_recv_ping_interval_without_data_ms",
                int(self.min_client_ping_interval_s * ms),
            ),
        ]
        if self.max_connection_age_s > 0:
            options += [
                ("grpc.max_connection_age_ms", int(self.max_connection_age_s * ms)),
                ("grpc.max_connection_age_grace_ms", int(self.max_connection_age_grace_s * ms)),
            ]
        return options


@dataclass
class ServerConfig:
    store: Store
    scheduling: Scheduling
    scenario: Scenario
    address: str = "127.0.0.1:0"
    limits: ServerLimits = field(default_factory=ServerLimits)
    interceptors: Sequence[grpc.ServerInterceptor] = ()
    auth: Auth | None = None  # None: every caller trusted
    tls: TlsFiles | None = None  # None: plaintext


def _parser(message: type[Message]) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return message.FromString(data)
        except (DecodeError, ValueError, RuntimeError) as e:
            return BadRequest(str(e) or type(e).__name__)

    return parse


def _serializer(message: type[Message]) -> Callable[[Any], bytes]:
    """The message's serialiser; a handler may also answer with bytes it encoded itself (the
    watch stream does)."""
    serialize = message.SerializeToString

    def to_bytes(response: Any) -> bytes:
        return response if type(response) is bytes else serialize(response)

    return to_bytes


def _generic_handler(service: Any, servicer: object) -> grpc.GenericRpcHandler:
    handlers = {}
    for method in service.methods:
        request = getattr(pb, method.input_type.name)
        response = getattr(pb, method.output_type.name)
        behaviour = getattr(servicer, method.name)
        make = (
            grpc.unary_stream_rpc_method_handler
            if method.server_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        handlers[method.name] = make(
            behaviour,
            request_deserializer=_parser(request),
            response_serializer=_serializer(response),
        )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


class ValleyServer:
    """A started-or-not gRPC server with its health service; created by ``create_server``."""

    def __init__(
        self, server: grpc.Server, health_servicer: health.HealthServicer, store: Store
    ) -> None:
        self.grpc = server
        self.health = health_servicer
        self._store = store
        self._stopped = threading.Event()

    def start(self) -> None:
        self.grpc.start()
        self.set_serving(True)

    def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *SERVICE_NAMES):
            self.health.set(name, status)

    def drain(self, grace: float = 10.0) -> None:
        """Graceful stop: report NOT_SERVING, end watch streams, let in-flight RPCs finish
        within ``grace`` seconds, then stop."""
        if self._stopped.is_set():
            return
        self.set_serving(False)
        close_watchers = getattr(self._store, "close_watchers", None)
        if close_watchers is not None:
            close_watchers()
        self.grpc.stop(grace).wait(grace + 5)
        self._stopped.set()

    def stop(self, grace: float | None = None) -> threading.Event:
        event: threading.Event = self.grpc.stop(grace)
        self._stopped.set()
        return event

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return bool(self.grpc.wait_for_termination(timeout))


def create_server(config: ServerConfig) -> tuple[ValleyServer, int]:
    """Build the server and bind ``config.address``; returns it (not started) and the port."""
    limits = config.limits
    auth = config.auth or Auth()
    interceptors = list(config.interceptors)
    if auth.enabled:
        interceptors.append(AuthInterceptor(auth))  # inside the metrics: refusals are counted
    # held refusals never take more than half the threads watch streams leave to unary calls
    held = min(limits.max_held_refusals, (limits.max_workers - limits.max_watchers) // 2)
    auth.holds = RefusalHolds(min(limits.max_held_refusals_per_tenant, held), held)
    server = grpc.server(
        ThreadPoolExecutor(max_workers=limits.max_workers, thread_name_prefix="valley-rpc"),
        interceptors=interceptors,
        options=limits.options(),
        maximum_concurrent_rpcs=limits.max_concurrent_rpcs,
    )
    placement = PlacementServicer(
        config.store,
        config.scheduling,
        config.scenario,
        max_watchers=limits.max_watchers,
        max_watchers_per_tenant=limits.max_watchers_per_tenant,
        auth=auth,
    )
    cluster = ClusterServicer(config.scheduling, auth, config.store)
    operator = OperatorServicer(config.store, config.scheduling, auth)
    server.add_generic_rpc_handlers(
        (
            _generic_handler(PLACEMENT_SERVICE, placement),
            _generic_handler(CLUSTER_SERVICE, cluster),
            _generic_handler(OPERATOR_SERVICE, operator),
        )
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *SERVICE_NAMES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    try:
        if config.tls is None:
            port = server.add_insecure_port(config.address)
        else:
            port = server.add_secure_port(config.address, server_credentials(config.tls))
    except RuntimeError as e:
        raise OSError(f"cannot listen on {config.address}: {e}") from e
    if port == 0:
        raise OSError(f"cannot listen on {config.address} (in use or not a local address?)")
    return ValleyServer(server, health_servicer, config.store), port
