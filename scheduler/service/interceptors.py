"""Cross-cutting gRPC server concerns: counting and timing every RPC.

``MetricsInterceptor`` wraps each handler and records, per ``(grpc_type, grpc_service,
grpc_method)``, what go-grpc-prometheus records: RPCs started, RPCs handled by status code,
handling time, and messages received and sent. The status code is the one the handler set
(``context.abort``, ``context.set_code``), ``Unknown`` for an exception that escaped without one,
``Canceled`` / ``DeadlineExceeded`` when the client went away before the handler finished, and
``OK`` otherwise.

The metric objects are handed in (``scheduler.metrics.grpc_interceptor()`` does that), so this
module depends on no other part of Valley.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from prometheus_client import Counter, Histogram

# The spelling of the Go ecosystem (google.golang.org/grpc/codes String()), which existing
# dashboards and alerts use; note the single "l" in Canceled.
CODE_NAMES: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.OK: "OK",
    grpc.StatusCode.CANCELLED: "Canceled",
    grpc.StatusCode.UNKNOWN: "Unknown",
    grpc.StatusCode.INVALID_ARGUMENT: "InvalidArgument",
    grpc.StatusCode.DEADLINE_EXCEEDED: "DeadlineExceeded",
    grpc.StatusCode.NOT_FOUND: "NotFound",
    grpc.StatusCode.ALREADY_EXISTS: "AlreadyExists",
    grpc.StatusCode.PERMISSION_DENIED: "PermissionDenied",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "ResourceExhausted",
    grpc.StatusCode.FAILED_PRECONDITION: "FailedPrecondition",
    grpc.StatusCode.ABORTED: "Aborted",
    grpc.StatusCode.OUT_OF_RANGE: "OutOfRange",
    grpc.StatusCode.UNIMPLEMENTED: "Unimplemented",
    grpc.StatusCode.INTERNAL: "Internal",
    grpc.StatusCode.UNAVAILABLE: "Unavailable",
    grpc.StatusCode.DATA_LOSS: "DataLoss",
    grpc.StatusCode.UNAUTHENTICATED: "Unauthenticated",
}

UNARY = "unary"
CLIENT_STREAM = "client_stream"
SERVER_STREAM = "server_stream"
BIDI_STREAM = "bidi_stream"


def split_method(full_method: str) -> tuple[str, str]:
    """``/valley.v1.PlacementService/SubmitWorkloads`` -> (``valley.v1.PlacementService``,
    ``SubmitWorkloads``)."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    if not service:
        return "unknown", method or "unknown"
    return service, method


def rpc_type(handler: grpc.RpcMethodHandler) -> str:
    if handler.request_streaming and handler.response_streaming:
        return BIDI_STREAM
    if handler.request_streaming:
        return CLIENT_STREAM
    if handler.response_streaming:
        return SERVER_STREAM
    return UNARY


def status_code(context: grpc.ServicerContext, raised: bool) -> str:
    """The code the RPC ends with, in Go spelling."""
    code = context.code()
    if code is not None:
        # set_code accepts StatusCode members; anything else grpc itself turns into Unknown
        return CODE_NAMES.get(code, "Unknown") if isinstance(code, grpc.StatusCode) else "Unknown"
    if raised:
        return "Unknown"
    if not context.is_active():
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            return "DeadlineExceeded"
        return "Canceled"
    return "OK"


@dataclass(frozen=True)
class GrpcMetrics:
    """The go-grpc-prometheus families, labelled (grpc_type, grpc_service, grpc_method) and,
    for ``handled``, grpc_code."""

    started: Counter
    handled: Counter
    handling_seconds: Histogram
    msg_received: Counter
    msg_sent: Counter


class _Call:
    """Bookkeeping of one RPC: started on creation, handled exactly once."""

    __slots__ = ("_done", "_labels", "_metrics", "_start")

    def __init__(self, metrics: GrpcMetrics, labels: tuple[str, str, str]) -> None:
        self._metrics = metrics
        self._labels = labels
        self._start = time.perf_counter()
        self._done = False
        metrics.started.labels(*labels).inc()

    def received(self) -> None:
        self._metrics.msg_received.labels(*self._labels).inc()

    def sent(self) -> None:
        self._metrics.msg_sent.labels(*self._labels).inc()

    def finish(self, code: str) -> None:
        if self._done:
            return
        self._done = True
        self._metrics.handled.labels(*self._labels, code).inc()
        elapsed = time.perf_counter() - self._start
        self._metrics.handling_seconds.labels(*self._labels).observe(elapsed)


class MetricsInterceptor(grpc.ServerInterceptor):
    """Counts and times every RPC into the given ``grpc_server_*`` metrics."""

    def __init__(self, metrics: GrpcMetrics) -> None:
        self._metrics = metrics

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            # unknown method: grpc answers Unimplemented itself, as in the Go library, uncounted
            return None
        service, method = split_method(handler_call_details.method)
        kind = rpc_type(handler)
        labels = (kind, service, method)
        if kind == UNARY:
            return grpc.unary_unary_rpc_method_handler(
                _unary(self._metrics, handler.unary_unary, labels, request_streaming=False),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if kind == CLIENT_STREAM:
            return grpc.stream_unary_rpc_method_handler(
                _unary(self._metrics, handler.stream_unary, labels, request_streaming=True),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if kind == SERVER_STREAM:
            return grpc.unary_stream_rpc_method_handler(
                _streaming(self._metrics, handler.unary_stream, labels, request_streaming=False),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            _streaming(self._metrics, handler.stream_stream, labels, request_streaming=True),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _counted(requests: Iterator[Any], call: _Call) -> Iterator[Any]:
    for request in requests:
        call.received()
        yield request


def _unary(
    metrics: GrpcMetrics,
    behavior: Callable[[Any, grpc.ServicerContext], Any],
    labels: tuple[str, str, str],
    *,
    request_streaming: bool,
) -> Callable[[Any, grpc.ServicerContext], Any]:
    def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
        call = _Call(metrics, labels)
        if request_streaming:
            request = _counted(request, call)
        else:
            call.received()
        try:
            response = behavior(request, context)
        except BaseException:
            call.finish(status_code(context, raised=True))
            raise
        code = status_code(context, raised=False)
        if code == "OK":
            call.sent()
        call.finish(code)
        return response

    return wrapped


def _streaming(
    metrics: GrpcMetrics,
    behavior: Callable[[Any, grpc.ServicerContext], Iterator[Any]],
    labels: tuple[str, str, str],
    *,
    request_streaming: bool,
) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
    def wrapped(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        call = _Call(metrics, labels)
        if request_streaming:
            request = _counted(request, call)
        else:
            call.received()
        try:
            for response in behavior(request, context):
                call.sent()
                yield response
        except GeneratorExit:
            # grpc dropped the stream (the client cancelled or the server is stopping)
            call.finish("Canceled" if context.code() is None else status_code(context, True))
            raise
        except BaseException:
            call.finish(status_code(context, raised=True))
            raise
        call.finish(status_code(context, raised=False))

    return wrapped
