"""Hostile input over real gRPC on loopback (tiny scenario): what a fuzzing client found, and
the rich errors every INVALID_ARGUMENT carries."""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler.config import Valley, ValleyConfig
from scheduler.domain import Scenario
from scheduler.loop import LoopConfig
from scheduler.service import ServerLimits
from tests.test_service_support import PLACED, Client, cpu_spec, serve, until


@pytest.fixture
def client(tiny: Scenario, tmp_path: Path) -> Iterator[Client]:
    with serve(tiny, tmp_path) as (_, c):
        yield c


@pytest.fixture(scope="module")
def refusing(tiny: Scenario, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """One server for the module's tests whose every request is refused (nothing is stored):
    starting a server per test costs its solver process's start-up."""
    with serve(tiny, Path(tmp_path_factory.mktemp("refusing"))) as (_, c):
        yield c


def rpc_error(call: object) -> grpc.RpcError:
    try:
        call()  # type: ignore[operator]
    except grpc.RpcError as e:
        return e
    raise AssertionError("the call succeeded")


def token(after: int, filters: str = "") -> str:
    data = json.dumps({"a": after, "f": filters}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.mark.parametrize("after", [2**63, 2**63 - 1 + 2**20, 10**30])
def test_list_answers_invalid_argument_naming_page_token_when_its_offset_overflows(
    refusing: Client, after: int
) -> None:
    from scheduler.service import paging

    good = paging.encode(1, "", [])
    filters = json.loads(base64.urlsafe_b64decode(good + "=" * (-len(good) % 4)))["f"]
    e = rpc_error(
        lambda: refusing.placement.ListWorkloads(
            pb.ListWorkloadsRequest(page_token=token(after, filters)), timeout=10
        )
    )
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in (e.details() or "")


@pytest.mark.parametrize("field", ["origin", "allowed_sites", "tenant", "labels"])
def test_error_echoes_at_most_a_cut_of_the_value_when_a_field_is_a_megabyte(
    refusing: Client, field: str
) -> None:
    huge = "x" * 1_000_000
    spec = cpu_spec(1)
    if field == "origin":
        spec.origin = huge
    elif field == "allowed_sites":
        spec.allowed_sites.append(huge)
    elif field == "tenant":
        spec.tenant = huge
    else:
        spec.labels[huge] = "v"
    e = rpc_error(lambda: refusing.submit([spec]))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = e.details() or ""
    assert field in details
    assert len(details) < 2000
    assert "x" * 200 not in details


def violations(e: grpc.RpcError) -> list[tuple[str, str]]:
    status = rpc_status.from_call(e)  # type: ignore[arg-type]
    assert status is not None, "no rich status"
    (detail,) = status.details
    bad = error_details_pb2.BadRequest()
    assert detail.Unpack(bad)
    return [(v.field, v.description) for v in bad.field_violations]


def test_invalid_argument_lists_every_field_violation_when_a_request_breaks_several(
    refusing: Client,
) -> None:
    ok = cpu_spec(1)
    bad = cpu_spec(0, tenant="", replicas=-1)
    bad.resources.memory_mib = 0
    worse = cpu_spec(1, origin="nowhere")
    worse.allowed_sites.append("mars")
    e = rpc_error(lambda: refusing.submit([ok, bad, ok, worse], request_id="\x00"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = [f for f, _ in violations(e)]
    assert fields == [
        "request_id",
        "workloads[1].tenant",
        "workloads[1].resources.cpu_millis",
        "workloads[1].resources.memory_mib",
        "workloads[1].replicas",
        "workloads[3].origin",
        "workloads[3].allowed_sites[0]",
    ]
    # the message stays the first violation's, and says how many more there are
    assert (e.details() or "").startswith("request_id: must not contain NUL characters")
    assert "(and 6 more)" in (e.details() or "")
    assert refusing.all_workloads() == []


def test_violations_listed_are_bounded_when_every_spec_of_a_full_request_is_wrong(
    refusing: Client,
) -> None:
    specs = [cpu_spec(0, origin="x" * 250, tenant="") for _ in range(1000)]
    e = rpc_error(lambda: refusing.submit(specs))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    listed = violations(e)
    assert 10 <= len(listed) <= 100
    assert listed[0][0] == "workloads[0].tenant"
    assert "more)" in (e.details() or "")


def test_a_request_id_reused_by_another_tenant_makes_a_new_request(client: Client) -> None:
    mine = client.submit([cpu_spec(1, tenant="a")], request_id="shared")
    theirs = client.submit([cpu_spec(1, tenant="b")], request_id="shared")
    assert theirs[0].id != mine[0].id and theirs[0].spec.tenant == "b"
    # a's replay still replays
    assert client.submit([cpu_spec(1, tenant="a")], request_id="shared")[0].id == mine[0].id


def test_another_tenants_small_workload_is_placed_within_seconds_behind_a_huge_request(
    beijing_hebei: Scenario, tmp_path: Path
) -> None:
    # a tenth of the reported request (1,000 specs x 10,000 replicas, whose one cycle took 91 s)
    big = [cpu_spec(0.001, tenant="flood", name=f"f{i}", replicas=10_000) for i in range(100)]
    with serve(beijing_hebei, tmp_path) as (_, c):
        accepted = c.submit(big)
        assert len(accepted) == 100  # valid, and accepted whole
        t0 = time.monotonic()
        (small,) = c.submit([cpu_spec(1, tenant="quiet", name="one")])
        until(lambda: c.get(small.id).state == PLACED, 10, "the quiet tenant's workload placed")
        waited = time.monotonic() - t0
        # the flood is placed too, over later cycles
        until(lambda: c.get(accepted[0].id).state == PLACED, 30, "the flood's first placed")
    assert waited < 10


@contextlib.contextmanager
def serve_limited(scenario: Scenario, directory: Path, limits: ServerLimits) -> Iterator[Client]:
    config = ValleyConfig(
        grpc_address="127.0.0.1:0",
        metrics_address=None,
        store_url=f"sqlite:///{directory}/valley.db",
        loop=LoopConfig(batch_window_s=0.01),
        limits=limits,
    )
    valley = Valley(config, scenario=scenario).start()
    client = Client.connect(valley.port)
    try:
        yield client
    finally:
        client.close()
        valley.stop(grace=1.0)


def open_watch(client: Client, tenant: str) -> grpc.Call:
    stream = client.placement.WatchWorkloads(pb.WatchWorkloadsRequest(tenant=tenant))
    stream.initial_metadata()  # open: the server has taken it
    return stream  # type: ignore[no-any-return]


def test_one_tenants_watch_streams_do_not_lock_another_tenant_out(
    tiny: Scenario, tmp_path: Path
) -> None:
    with serve_limited(tiny, tmp_path, ServerLimits(max_watchers_per_tenant=3)) as c:
        mine = [open_watch(c, "greedy") for _ in range(3)]
        one_more = c.placement.WatchWorkloads(pb.WatchWorkloadsRequest(tenant="greedy"))
        e = rpc_error(lambda: next(one_more))
        assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "per tenant" in (e.details() or "")
        theirs = open_watch(c, "polite")
        (w,) = c.submit([cpu_spec(1, tenant="polite")])
        assert next(theirs).workload.id == w.id
        for stream in (*mine, theirs):
            stream.cancel()


def test_calls_beyond_the_concurrent_rpc_cap_are_resource_exhausted(
    tiny: Scenario, tmp_path: Path
) -> None:
    with serve_limited(tiny, tmp_path, ServerLimits(max_concurrent_rpcs=2)) as c:
        held = [open_watch(c, t) for t in ("a", "b")]
        e = rpc_error(lambda: c.get("w-nope"))
        assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        for stream in held:
            stream.cancel()
        until(lambda: code_of_get(c) == grpc.StatusCode.NOT_FOUND, 10, "calls served again")


def code_of_get(c: Client) -> grpc.StatusCode:
    return rpc_error(lambda: c.get("w-nope")).code()


def test_a_connection_is_closed_at_its_maximum_age_and_the_client_reconnects(
    tiny: Scenario, tmp_path: Path
) -> None:
    limits = ServerLimits(max_connection_age_s=1.0, max_connection_age_grace_s=0.5)
    with serve_limited(tiny, tmp_path, limits) as c:
        stream = open_watch(c, "a")
        t0 = time.monotonic()
        e = rpc_error(lambda: list(stream))  # the stream ends with its connection
        assert e.code() == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - t0 < 10
        assert code_of_get(c) == grpc.StatusCode.NOT_FOUND  # a new connection serves
