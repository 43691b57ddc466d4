"""The gRPC metrics interceptor over real gRPC on loopback: started and handled counts, codes in
the Go spelling, unary and server-streaming handlers, abort / set_code / raised exceptions,
client cancellation and deadlines."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures

import grpc
import pytest

from scheduler.metrics import REGISTRY, grpc_interceptor
from scheduler.service.interceptors import CODE_NAMES

SERVICE = "test.v1.Probe"
_ids = itertools.count()


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _identity(b: bytes) -> bytes:
    return b


class ProbeServer:
    """A gRPC server with one generic service whose handlers a test sets per method. Each test
    gets a fresh service name, so counters start from zero for it."""

    def __init__(self) -> None:
        self.service = f"{SERVICE}{next(_ids)}"
        self.unary: dict[str, Callable[[bytes, grpc.ServicerContext], bytes]] = {}
        self.stream: dict[str, Callable[[bytes, grpc.ServicerContext], Iterator[bytes]]] = {}
        self.bidi: dict[
            str, Callable[[Iterator[bytes], grpc.ServicerContext], Iterator[bytes]]
        ] = {}
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4), interceptors=[grpc_interceptor()]
        )

    def start(self) -> grpc.Channel:
        handlers: dict[str, grpc.RpcMethodHandler] = {}
        for name, fn in self.unary.items():
            handlers[name] = grpc.unary_unary_rpc_method_handler(fn, _identity, _identity)
        for name, sfn in self.stream.items():
            handlers[name] = grpc.unary_stream_rpc_method_handler(sfn, _identity, _identity)
        for name, bfn in self.bidi.items():
            handlers[name] = grpc.stream_stream_rpc_method_handler(bfn, _identity, _identity)
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(self.service, handlers),)
        )
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        return self.channel

    def call(self, method: str, timeout: float = 5.0) -> bytes:
        fn = self.channel.unary_unary(f"/{self.service}/{method}", _identity, _identity)
        return fn(b"ping", timeout=timeout)

    def call_stream(self, method: str, timeout: float = 5.0) -> grpc.Call:
        fn = self.channel.unary_stream(f"/{self.service}/{method}", _identity, _identity)
        return fn(b"ping", timeout=timeout)

    def handled(self, method: str, code: str, rpc_type: str = "unary") -> float:
        return _sample(
            "grpc_server_handled_total",
            grpc_type=rpc_type,
            grpc_service=self.service,
            grpc_method=method,
            grpc_code=code,
        )

    def started(self, method: str, rpc_type: str = "unary") -> float:
        return _sample(
            "grpc_server_started_total",
            grpc_type=rpc_type,
            grpc_service=self.service,
            grpc_method=method,
        )

    def stop(self) -> None:
        self.channel.close()
        self.server.stop(None)


@pytest.fixture
def probe() -> Iterator[ProbeServer]:
    p = ProbeServer()
    yield p
    p.stop()


def _wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_unary_success_counts_one_started_and_one_handled_ok(probe: ProbeServer) -> None:
    probe.unary["Echo"] = lambda req, ctx: req
    probe.start()
    assert probe.call("Echo") == b"ping"
    assert probe.call("Echo") == b"ping"
    assert probe.started("Echo") == 2
    assert probe.handled("Echo", "OK") == 2
    labels = {"grpc_type": "unary", "grpc_service": probe.service, "grpc_method": "Echo"}
    assert _sample("grpc_server_handling_seconds_count", **labels) == 2
    assert _sample("grpc_server_msg_received_total", **labels) == 2
    assert _sample("grpc_server_msg_sent_total", **labels) == 2


# Every status code a handler can abort with, and its Go spelling (one case per line).
GO_SPELLING = [
    (grpc.StatusCode.CANCELLED, "Canceled"),
    (grpc.StatusCode.UNKNOWN, "Unknown"),
    (grpc.StatusCode.INVALID_ARGUMENT, "InvalidArgument"),
    (grpc.StatusCode.DEADLINE_EXCEEDED, "DeadlineExceeded"),
    (grpc.StatusCode.NOT_FOUND, "NotFound"),
    (grpc.StatusCode.ALREADY_EXISTS, "AlreadyExists"),
    (grpc.StatusCode.PERMISSION_DENIED, "PermissionDenied"),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, "ResourceExhausted"),
    (grpc.StatusCode.FAILED_PRECONDITION, "FailedPrecondition"),
    (grpc.StatusCode.ABORTED, "Aborted"),
    (grpc.StatusCode.OUT_OF_RANGE, "OutOfRange"),
    (grpc.StatusCode.UNIMPLEMENTED, "Unimplemented"),
    (grpc.StatusCode.INTERNAL, "Internal"),
    (grpc.StatusCode.UNAVAILABLE, "Unavailable"),
    (grpc.StatusCode.DATA_LOSS, "DataLoss"),
    (grpc.StatusCode.UNAUTHENTICATED, "Unauthenticated"),
]


def test_every_grpc_code_has_its_go_spelling() -> None:
    assert {code for code, _ in GO_SPELLING} | {grpc.StatusCode.OK} == set(grpc.StatusCode)
    assert dict(GO_SPELLING) | {grpc.StatusCode.OK: "OK"} == CODE_NAMES


@pytest.mark.parametrize(("code", "spelling"), GO_SPELLING, ids=[s for _, s in GO_SPELLING])
def test_abort_is_counted_under_its_go_spelling(
    probe: ProbeServer, code: grpc.StatusCode, spelling: str
) -> None:
    def handler(req: bytes, ctx: grpc.ServicerContext) -> bytes:
        ctx.abort(code, "no")

    probe.unary["Fail"] = handler
    probe.start()
    with pytest.raises(grpc.RpcError) as err:
        probe.call("Fail")
    assert err.value.code() == code
    assert probe.handled("Fail", spelling) == 1
    assert probe.handled("Fail", "OK") == 0
    assert probe.started("Fail") == 1


def test_set_code_without_raising_is_counted_with_that_code(probe: ProbeServer) -> None:
    def handler(req: bytes, ctx: grpc.ServicerContext) -> bytes:
        ctx.set_code(grpc.StatusCode.NOT_FOUND)
        ctx.set_details("workload w-1 not found")
        return b""

    probe.unary["Get"] = handler
    probe.start()
    with pytest.raises(grpc.RpcError) as err:
        probe.call("Get")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert probe.handled("Get", "NotFound") == 1
    assert probe.handled("Get", "OK") == 0


def test_an_escaping_exception_is_counted_as_unknown(probe: ProbeServer) -> None:
    def handler(req: bytes, ctx: grpc.ServicerContext) -> bytes:
        raise RuntimeError("bug")

    probe.unary["Crash"] = handler
    probe.start()
    with pytest.raises(grpc.RpcError) as err:
        probe.call("Crash")
    assert err.value.code() == grpc.StatusCode.UNKNOWN
    assert probe.handled("Crash", "Unknown") == 1


def test_server_stream_counts_messages_and_ok(probe: ProbeServer) -> None:
    def handler(req: bytes, ctx: grpc.ServicerContext) -> Iterator[bytes]:
        yield from (b"a", b"b", b"c")

    probe.stream["Watch"] = handler
    probe.start()
    assert list(probe.call_stream("Watch")) == [b"a", b"b", b"c"]
    labels = {"grpc_type": "server_stream", "grpc_service": probe.service, "grpc_method": "Watch"}
    assert probe.started("Watch", "server_stream") == 1
    assert probe.handled("Watch", "OK", "server_stream") == 1
    assert _sample("grpc_server_msg_sent_total", **labels) == 3
    assert _sample("grpc_server_msg_received_total", **labels) == 1


def test_server_stream_abort_after_some_messages_is_counted_with_its_code(
    probe: ProbeServer,
) -> None:
    def handler(req: bytes, ctx: grpc.ServicerContext) -> Iterator[bytes]:
        yield b"a"
        ctx.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many watchers")

    probe.stream["Watch"] = handler
    probe.start()
    got = []
    with pytest.raises(grpc.RpcError) as err:
        for m in probe.call_stream("Watch"):
            got.append(m)
    assert got == [b"a"]
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert probe.handled("Watch", "ResourceExhausted", "server_stream") == 1
    assert probe.handled("Watch", "OK", "server_stream") == 0


def test_server_stream_cancelled_by_the_client_is_counted_as_canceled(
    probe: ProbeServer,
) -> None:
    first_sent = threading.Event()

    def handler(req: bytes, ctx: grpc.ServicerContext) -> Iterator[bytes]:
        # like WatchWorkloads: send events until the client goes away
        yield b"event"
        first_sent.set()
        while ctx.is_active():
            time.sleep(0.01)

    probe.stream["Watch"] = handler
    probe.start()
    call = probe.call_stream("Watch", timeout=30)
    assert next(call) == b"event"
    assert first_sent.wait(5)
    call.cancel()
    assert _wait_for(lambda: probe.handled("Watch", "Canceled", "server_stream") == 1)
    assert probe.handled("Watch", "OK", "server_stream") == 0


def test_unary_past_its_deadline_is_counted_as_deadline_exceeded(probe: ProbeServer) -> None:
    def handler(req: bytes, ctx: grpc.ServicerContext) -> bytes:
        while ctx.is_active():
            time.sleep(0.01)
        return b"too late"

    probe.unary["Slow"] = handler
    probe.start()
    with pytest.raises(grpc.RpcError) as err:
        probe.call("Slow", timeout=0.2)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert _wait_for(lambda: probe.handled("Slow", "DeadlineExceeded") == 1)


def test_unknown_method_is_not_counted(probe: ProbeServer) -> None:
    probe.unary["Echo"] = lambda req, ctx: req
    probe.start()
    with pytest.raises(grpc.RpcError) as err:
        probe.call("Missing")
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert probe.started("Missing") == 0
    assert probe.handled("Missing", "Unimplemented") == 0


def test_several_servers_in_one_process_share_the_counters() -> None:
    servers = [ProbeServer() for _ in range(2)]
    try:
        for s in servers:
            s.service = SERVICE + "Shared"
            s.unary["Echo"] = lambda req, ctx: req
        before = _sample(
            "grpc_server_handled_total",
            grpc_type="unary",
            grpc_service=SERVICE + "Shared",
            grpc_method="Echo",
            grpc_code="OK",
        )
        for s in servers:
            s.start()
            s.call("Echo")
        assert servers[0].handled("Echo", "OK") == before + 2
    finally:
        for s in servers:
            s.stop()


def test_bidi_stream_counts_messages_both_ways(probe: ProbeServer) -> None:
    def handler(requests: Iterator[bytes], ctx: grpc.ServicerContext) -> Iterator[bytes]:
        for r in requests:
            yield r + r

    probe.bidi["Chat"] = handler
    probe.start()
    chat = probe.channel.stream_stream(f"/{probe.service}/Chat", _identity, _identity)
    assert list(chat(iter([b"a", b"b", b"c"]), timeout=5)) == [b"aa", b"bb", b"cc"]
    labels = {"grpc_type": "bidi_stream", "grpc_service": probe.service, "grpc_method": "Chat"}
    assert probe.handled("Chat", "OK", "bidi_stream") == 1
    assert _sample("grpc_server_msg_received_total", **labels) == 3
    assert _sample("grpc_server_msg_sent_total", **labels) == 3
