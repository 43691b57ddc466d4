"""Hostile input over real gRPC on loopback (tiny scenario): what a fuzzing client found, and
the rich errors every INVALID_ARGUMENT carries."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler.domain import Scenario
from tests.test_service_support import PLACED, Client, cpu_spec, serve, until


@pytest.fixture
def client(tiny: Scenario, tmp_path: Path) -> Iterator[Client]:
    with serve(tiny, tmp_path) as (_, c):
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
    client: Client, after: int
) -> None:
    from scheduler.service import paging

    good = paging.encode(1, "", [])
    filters = json.loads(base64.urlsafe_b64decode(good + "=" * (-len(good) % 4)))["f"]
    e = rpc_error(
        lambda: client.placement.ListWorkloads(
            pb.ListWorkloadsRequest(page_token=token(after, filters)), timeout=10
        )
    )
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in (e.details() or "")


@pytest.mark.parametrize("field", ["origin", "allowed_sites", "tenant", "labels"])
def test_error_echoes_at_most_a_cut_of_the_value_when_a_field_is_a_megabyte(
    client: Client, field: str
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
    e = rpc_error(lambda: client.submit([spec]))
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
    client: Client,
) -> None:
    ok = cpu_spec(1)
    bad = cpu_spec(0, tenant="", replicas=-1)
    bad.resources.memory_mib = 0
    worse = cpu_spec(1, origin="nowhere")
    worse.allowed_sites.append("mars")
    e = rpc_error(lambda: client.submit([ok, bad, ok, worse], request_id="\x00"))
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
    assert client.all_workloads() == []


def test_violations_listed_are_bounded_when_every_spec_of_a_full_request_is_wrong(
    client: Client,
) -> None:
    specs = [cpu_spec(0, origin="x" * 250, tenant="") for _ in range(1000)]
    e = rpc_error(lambda: client.submit(specs))
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
