"""A hostile client over real gRPC on loopback: >= 10,000 seeded random and malformed requests
across every RPC of PlacementService and ClusterService, as messages (every field, driven by
the descriptors, so new fields are fuzzed too) and as raw bytes (malformed protobuf). Nothing
may answer INTERNAL or UNKNOWN, the server stays healthy, and the store holds exactly the
workloads the server said it accepted. A second run does the same against a server with
``--auth``, each call with a tenant's token, the operator's, an unknown, malformed or no one."""

from __future__ import annotations

import base64
import json
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler._proto.valley.v1 import placement_pb2_grpc as pb_grpc
from scheduler.domain import Scenario
from scheduler.service import paging
from tests.test_service_support import serve
from tests.trust_support import OPERATOR_TOKEN, TOKENS, auth_toml, bearer, serve_auth

pytestmark = pytest.mark.slow

REQUESTS = 10_400
THREADS = 4
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
F = FieldDescriptor
INTS = {
    F.TYPE_INT32: (-(2**31), 2**31 - 1),
    F.TYPE_INT64: (-(2**63), 2**63 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1),
    F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    F.TYPE_SINT64: (-(2**63), 2**63 - 1),
}
WORDS = ["", "acme", "t", "near", "green", "city", "far", "cpu", "gpu", "A800", "w-", "0"]
_issued = paging.encode(0, "", [])
ISSUED_FILTER = json.loads(base64.urlsafe_b64decode(_issued + "=" * (-len(_issued) % 4)))["f"]
Metadata = tuple[tuple[str, str], ...]
METHODS = [
    (service, method)
    for service in pb.DESCRIPTOR.services_by_name.values()
    for method in service.methods
]


class Fuzzer:
    """Random values for every field type: mostly plausible, often at the edges, sometimes
    absurd (NUL, huge text, NaN, out-of-range enums and timestamps)."""

    def __init__(
        self, seed: int, known_ids: list[str], tenants: Sequence[str] = ("acme", "zgc", "t")
    ) -> None:
        self.rng = random.Random(seed)
        self.known_ids = known_ids
        self.tenants = tenants

    def text(self) -> str:
        r = self.rng.random()
        if r < 0.5:
            return self.rng.choice(WORDS)
        if r < 0.6 and self.known_ids:
            return self.rng.choice(self.known_ids)
        if r < 0.7:
            return self.page_token()
        if r < 0.8:
            return "".join(chr(self.rng.randrange(0, 0x3000)) for _ in range(self.rng.randrange(8)))
        if r < 0.97:
            return "x" * self.rng.choice([253, 254, 1000])
        return self.rng.choice(["\x00", "a\x00b"]) + "y" * self.rng.choice([0, 100_000])

    def page_token(self) -> str:
        """A token this server issued, garbage, or a crafted one (offsets past BIGINT)."""
        r = self.rng.random()
        if r < 0.3:
            return paging.encode(self.rng.choice([0, 1, 5]), "", [])
        if r < 0.5:
            return base64.urlsafe_b64encode(self.rng.randbytes(self.rng.randrange(24))).decode()
        after = self.rng.choice([0, 1, -1, 2**63 - 1, 2**63, 2**64, 10**30, 1.5])
        f = self.rng.choice(["", "0" * 12, ISSUED_FILTER])
        data = json.dumps({"a": after, "f": f}).encode()
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    def integer(self, kind: int) -> int:
        low, high = INTS[kind]
        r = self.rng.random()
        if r < 0.6:
            return max(low, min(high, self.rng.choice([0, 1, 2, 3, 5, 100, 1000, 999, -1])))
        if r < 0.8:
            return self.rng.choice([low, high, 10_000, 10_001, 4000, 8192, 65536])
        return self.rng.randint(low, high)

    def real(self) -> float:
        return self.rng.choice(
            [0.0, 1.0, 2.0, 5.0, -1.0, math.nan, math.inf, -math.inf, 1e308, 1e-300, -0.0]
        )

    def value(self, field: FieldDescriptor, depth: int) -> Any:
        t = field.type
        if t in INTS:
            return self.integer(t)
        if t in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
            return self.real()
        if t == F.TYPE_BOOL:
            return self.rng.random() < 0.5
        if t == F.TYPE_STRING:
            return self.text()
        if t == F.TYPE_BYTES:
            return self.rng.randbytes(self.rng.randrange(16))
        if t == F.TYPE_ENUM:
            known = [v.number for v in field.enum_type.values]
            if self.rng.random() < 0.85:
                return self.rng.choice(known)
            return self.rng.choice([-1, 99, 2**31 - 1])
        raise AssertionError(f"unhandled field type {t}")

    def fill(self, m: Message, depth: int = 0) -> Message:
        d: Descriptor = m.DESCRIPTOR
        for field in d.fields:
            if self.rng.random() < 0.35:
                continue  # left unset
            repeated = field.is_repeated
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                target = getattr(m, field.name)
                for _ in range(self.rng.choice([0, 1, 2, 3, 70])):
                    target[self.text()[:300]] = self.text()[:300]
            elif field.message_type is not None:
                if depth > 3:
                    continue
                count = self.rng.choice([1, 1, 2, 3]) if repeated else 1
                for _ in range(count):
                    child = getattr(m, field.name).add() if repeated else getattr(m, field.name)
                    self.fill(child, depth + 1)
                    if not repeated and child.ByteSize() == 0:
                        child.SetInParent()
            elif repeated:
                getattr(m, field.name).extend(
                    self.value(field, depth) for _ in range(self.rng.choice([0, 1, 2, 65]))
                )
            else:
                setattr(m, field.name, self.value(field, depth))
        return m

    def plausible_spec(self) -> pb.WorkloadSpec:
        """A spec that is mostly valid on the tiny scenario, with one field gone wrong now and
        then: most are accepted."""
        spec = pb.WorkloadSpec(
            tenant=self.rng.choice(self.tenants),
            name=f"f{self.rng.randrange(100)}",
            resources=pb.Resources(
                cpu_millis=self.rng.choice([100, 500, 1000]), memory_mib=self.rng.choice([64, 512])
            ),
            replicas=self.rng.choice([0, 1, 2]),
        )
        if self.rng.random() < 0.3:
            field = self.rng.choice(spec.DESCRIPTOR.fields)
            if field.message_type is None and not field.is_repeated:
                setattr(spec, field.name, self.value(field, 0))
        return spec

    def request(self, method: Any) -> Message:
        cls = getattr(pb, method.input_type.name)
        m = self.fill(cls())
        if isinstance(m, pb.SubmitWorkloadsRequest) and self.rng.random() < 0.6:
            del m.workloads[:]
            m.workloads.extend(self.plausible_spec() for _ in range(self.rng.randrange(1, 4)))
            m.request_id = self.rng.choice(["", "", "r1", "r2", f"r{self.rng.randrange(50)}"])
        if hasattr(m, "page_size") and self.rng.random() < 0.5:
            m.page_size = self.rng.choice([0, 1, 1000, 5000])
        return m

    def raw(self, request: Message) -> bytes:
        data = bytearray(request.SerializeToString())
        r = self.rng.random()
        if r < 0.3 or not data:
            return self.rng.randbytes(self.rng.randrange(64))
        if r < 0.6:
            for _ in range(self.rng.randrange(1, 4)):
                data[self.rng.randrange(len(data))] = self.rng.randrange(256)
            return bytes(data)
        if r < 0.8:
            return bytes(data[: self.rng.randrange(len(data))])
        # a field with a length running past the end, or an unknown wire type
        return bytes(data) + self.rng.choice([b"\x0a\xff\xff\xff\x0f", b"\x0f", b"\xfa\xff\xff"])


def exercise(
    channel: grpc.Channel,
    seed: int,
    n: int,
    accepted: set[str],
    codes: dict[Any, int],
    callers: Sequence[Metadata] = ((),),
    tenants: Sequence[str] = ("acme", "zgc", "t"),
) -> None:
    """``n`` random calls on ``channel``, each with metadata drawn from ``callers``."""
    known: list[str] = []
    fz = Fuzzer(seed, known, tenants)
    ch = channel
    for _ in range(n):
        metadata = fz.rng.choice(callers)
        service, method = fz.rng.choice(METHODS)
        path = f"/{service.full_name}/{method.name}"
        request = fz.request(method)
        raw = fz.rng.random() < 0.25
        out = getattr(pb, method.output_type.name)
        call: Callable[..., Any]
        if method.server_streaming:
            call = ch.unary_stream(
                path,
                request_serializer=None if raw else type(request).SerializeToString,
                response_deserializer=None if raw else out.FromString,
            )
        else:
            call = ch.unary_unary(
                path,
                request_serializer=None if raw else type(request).SerializeToString,
                response_deserializer=None if raw else out.FromString,
            )
        payload = fz.raw(request) if raw else request
        try:
            if method.server_streaming:
                for _ in call(payload, timeout=0.05, metadata=metadata):
                    pass
                code = grpc.StatusCode.OK
            else:
                response = call(payload, timeout=10, metadata=metadata)
                code = grpc.StatusCode.OK
                if method.name == "SubmitWorkloads":
                    if raw:
                        response = pb.SubmitWorkloadsResponse.FromString(response)
                    ids = [w.id for w in response.workloads]
                    accepted.update(ids)
                    known.extend(ids)
        except grpc.RpcError as e:
            code = e.code()
            assert code not in FORBIDDEN, f"{path} raw={raw}: {code} {e.details()} for {request}"
        codes[method.name, code] = codes.get((method.name, code), 0) + 1


def fuzz(
    channel: grpc.Channel,
    n: int,
    accepted: set[str],
    codes: dict[Any, int],
    first_seed: int = 0,
    **options: Any,
) -> None:
    """``n`` random calls (``exercise``) over ``THREADS`` threads; then the server is healthy."""
    failures: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            exercise(channel, seed, n // THREADS, accepted, codes, **options)
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=worker, args=(first_seed + s,)) for s in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]
    health = health_pb2_grpc.HealthStub(channel)
    status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status
    assert status == health_pb2.HealthCheckResponse.SERVING


def test_thousands_of_random_and_malformed_requests_never_answer_internal_or_unknown(
    tiny: Scenario, tmp_path: Path
) -> None:
    accepted: set[str] = set()
    codes: dict[Any, int] = {}
    started = time.monotonic()
    with serve(tiny, tmp_path) as (_, client):
        fuzz(client.channel, REQUESTS, accepted, codes)
        stored = {w.id for w in client.all_workloads()}
    assert sum(codes.values()) >= 10_000
    assert stored == accepted
    # the run reached far: both services, every method, accepted and refused requests
    assert {name for name, _ in codes} == {m.name for _, m in METHODS}
    assert accepted and codes.get(("SubmitWorkloads", grpc.StatusCode.INVALID_ARGUMENT))
    assert time.monotonic() - started < 120


AUTH_REQUESTS = 2_400
# tenant tokens and the operator's (most calls), and every way of not having one
CALLERS: tuple[Metadata, ...] = (
    *[bearer(TOKENS["a"])] * 4,
    *[bearer(TOKENS["b"])] * 2,
    *[bearer(OPERATOR_TOKEN)] * 2,
    (),
    bearer("not-a-token-anyone-has"),
    bearer("x" * 5000),
    (("authorization", "Basic " + TOKENS["a"]),),
    (("authorization", "Bearer "),),
)


def test_random_requests_with_valid_and_invalid_tokens_never_answer_internal_or_unknown(
    tiny: Scenario, tmp_path: Path
) -> None:
    accepted: set[str] = set()
    codes: dict[Any, int] = {}
    quotas = "[quotas.a]\ncpu_millis = 40000\nsubmissions_per_second = 300\n"
    with serve_auth(tiny, tmp_path, auth_toml(quotas)) as valley:
        channel = grpc.insecure_channel(f"127.0.0.1:{valley.port}")
        tenants = ("", "a", "b", "acme")
        fuzz(channel, AUTH_REQUESTS, accepted, codes, 100, callers=CALLERS, tenants=tenants)
        stored = {w.id for w in _all_workloads(channel, bearer(OPERATOR_TOKEN))}
        channel.close()
    assert stored == accepted
    assert accepted
    seen = {code for _, code in codes}
    assert {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
    } <= seen


def _all_workloads(channel: grpc.Channel, metadata: Metadata) -> list[pb.Workload]:
    placement = pb_grpc.PlacementServiceStub(channel)
    out: list[pb.Workload] = []
    token = ""
    while True:
        page = placement.ListWorkloads(
            pb.ListWorkloadsRequest(page_size=1000, page_token=token), timeout=30, metadata=metadata
        )
        out += page.workloads
        token = page.next_page_token
        if not token:
            return out
