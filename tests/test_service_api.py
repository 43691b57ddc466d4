"""The API contract over real gRPC on loopback, on the tiny scenario (5 CPU nodes of 4 cores:
near-cpu x2, green-cpu x3, and one 2-GPU node in green)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler.config import Valley
from scheduler.domain import Scenario
from tests.test_service_support import (
    CANCELLED,
    PENDING,
    PLACED,
    UNSCHEDULABLE,
    Client,
    cpu_spec,
    serve,
    until,
)


@pytest.fixture
def server(tiny: Scenario, tmp_path: Path) -> Iterator[tuple[Valley, Client]]:
    with serve(tiny, tmp_path) as running:
        yield running


@pytest.fixture
def client(server: tuple[Valley, Client]) -> Client:
    return server[1]


@pytest.fixture(scope="module")
def idle_server(
    tiny: Scenario, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Valley, Client]]:
    """One server for the module's tests that store nothing (lookups of unknown ids, refused
    requests, health): starting a server per test costs its solver process's start-up. Those
    that assert the store stays empty fail here too if any of them stores something."""
    with serve(tiny, Path(tmp_path_factory.mktemp("idle"))) as running:
        yield running


@pytest.fixture
def idle_client(idle_server: tuple[Valley, Client]) -> Client:
    return idle_server[1]


def code_of(call: object) -> tuple[grpc.StatusCode, str]:
    try:
        call()  # type: ignore[operator]
    except grpc.RpcError as e:
        return e.code(), e.details() or ""
    raise AssertionError("the call succeeded")


def placed(client: Client, wid: str) -> pb.Workload:
    until(lambda: client.get(wid).state == PLACED, 30, f"{wid} placed")
    return client.get(wid)


def test_submit_returns_the_workloads_in_request_order_with_ids_and_places_them(
    client: Client,
) -> None:
    ws = client.submit([cpu_spec(1, name="a"), cpu_spec(2, name="b", replicas=2)])
    assert [w.spec.name for w in ws] == ["a", "b"]
    assert all(w.id and w.state == PENDING and w.reason == "" for w in ws)
    assert ws[0].id != ws[1].id
    got = placed(client, ws[1].id)
    assert [p.replica for p in got.placements] == [0, 1]
    assert got.placed_at.seconds >= got.created_at.seconds > 0
    assert got.cost.power_watts > 0


def test_resubmitting_a_request_id_creates_nothing_new(client: Client) -> None:
    specs = [cpu_spec(1, name="a"), cpu_spec(1, name="b")]
    first = client.submit(specs, request_id="req-42")
    again = client.submit(specs, request_id="req-42")
    assert [w.id for w in again] == [w.id for w in first]
    assert len(client.all_workloads()) == 2


def test_a_request_id_reused_for_another_request_is_invalid_argument(client: Client) -> None:
    client.submit([cpu_spec(1)], request_id="req-1")
    code, details = code_of(lambda: client.submit([cpu_spec(2)], request_id="req-1"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("request_id")
    assert len(client.all_workloads()) == 1


def test_cancel_frees_capacity_that_a_pending_workload_then_gets(client: Client) -> None:
    full = client.submit([cpu_spec(4, name=f"full{i}") for i in range(5)])
    for w in full:
        placed(client, w.id)
    (late,) = client.submit([cpu_spec(4, name="late")])
    until(lambda: client.get(late.id).reason != "", 30, "late tried")
    waiting = client.get(late.id)
    assert waiting.state == PENDING and "does not fit" in waiting.reason
    cancelled = client.placement.CancelWorkload(pb.CancelWorkloadRequest(id=full[2].id))
    assert cancelled.state == CANCELLED
    got = placed(client, late.id)
    assert got.placements[0].node == client.get(full[2].id).placements[0].node


def test_cancel_rules(client: Client) -> None:
    (w,) = client.submit([cpu_spec(1)])
    first = client.placement.CancelWorkload(pb.CancelWorkloadRequest(id=w.id))
    again = client.placement.CancelWorkload(pb.CancelWorkloadRequest(id=w.id))
    assert first.state == again.state == CANCELLED
    assert again == first  # unchanged
    (never,) = client.submit([cpu_spec(100)])  # bigger than every node
    until(lambda: client.get(never.id).state == UNSCHEDULABLE, 30, "unschedulable")
    code, _ = code_of(
        lambda: client.placement.CancelWorkload(pb.CancelWorkloadRequest(id=never.id))
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    (short,) = client.submit([cpu_spec(1, duration_s=1)])
    until(lambda: client.get(short.id).state == pb.WORKLOAD_STATE_COMPLETED, 30, "completed")
    code, _ = code_of(
        lambda: client.placement.CancelWorkload(pb.CancelWorkloadRequest(id=short.id))
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize("wid", ["w-doesnotexist", "", "x" * 300])
def test_unknown_ids_are_not_found_everywhere(idle_client: Client, wid: str) -> None:
    p = idle_client.placement
    for call in (
        lambda: p.GetWorkload(pb.GetWorkloadRequest(id=wid)),
        lambda: p.CancelWorkload(pb.CancelWorkloadRequest(id=wid)),
        lambda: p.ExplainWorkload(pb.ExplainWorkloadRequest(id=wid)),
    ):
        assert code_of(call)[0] == grpc.StatusCode.NOT_FOUND


def test_list_pages_in_a_stable_order_and_filters(client: Client) -> None:
    ids = []
    for i in range(12):
        (w,) = client.submit([cpu_spec(100, tenant="a" if i % 3 else "b", name=f"n{i}")])
        ids.append(w.id)
    seen, token, pages = [], "", 0
    while True:
        page = client.placement.ListWorkloads(
            pb.ListWorkloadsRequest(page_size=5, page_token=token)
        )
        seen += [w.id for w in page.workloads]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == ids and pages == 3
    only_b = client.placement.ListWorkloads(pb.ListWorkloadsRequest(tenant="b"))
    assert [w.spec.name for w in only_b.workloads] == ["n0", "n3", "n6", "n9"]
    assert only_b.next_page_token == ""
    until(lambda: len(client.all_workloads(states=[UNSCHEDULABLE])) == 12, 30, "all unschedulable")
    assert client.all_workloads(states=[PENDING]) == []


def test_list_page_size_defaults_to_100_and_is_capped_at_1000(client: Client) -> None:
    for _ in range(2):
        client.submit([cpu_spec(100, name=f"n{i}") for i in range(1000)])  # never fit: cheap
    default = client.placement.ListWorkloads(pb.ListWorkloadsRequest())
    assert len(default.workloads) == 100 and default.next_page_token
    capped = client.placement.ListWorkloads(pb.ListWorkloadsRequest(page_size=5000))
    assert len(capped.workloads) == 1000 and capped.next_page_token


@pytest.mark.parametrize("token", ["garbage!", "eyJhIjogLTF9", "e30"])
def test_a_bad_page_token_is_invalid_argument(idle_client: Client, token: str) -> None:
    code, details = code_of(
        lambda: idle_client.placement.ListWorkloads(pb.ListWorkloadsRequest(page_token=token))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("page_token")


def test_a_page_token_used_with_other_filters_is_invalid_argument(client: Client) -> None:
    client.submit([cpu_spec(100, tenant="a"), cpu_spec(100, tenant="a")])
    page = client.placement.ListWorkloads(pb.ListWorkloadsRequest(tenant="a", page_size=1))
    code, _ = code_of(
        lambda: client.placement.ListWorkloads(
            pb.ListWorkloadsRequest(tenant="b", page_token=page.next_page_token)
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def watch(client: Client, tenant: str = "") -> tuple[queue.Queue[pb.WorkloadEvent], grpc.Future]:
    """Open a watch stream and wait until the server says it is open (initial metadata)."""
    stream = client.placement.WatchWorkloads(pb.WatchWorkloadsRequest(tenant=tenant))
    stream.initial_metadata()
    events: queue.Queue[pb.WorkloadEvent] = queue.Queue()

    def pump() -> None:
        try:
            for e in stream:
                events.put(e)
        except grpc.RpcError:
            pass

    threading.Thread(target=pump, daemon=True).start()
    return events, stream


def take(events: queue.Queue[pb.WorkloadEvent], n: int) -> list[pb.WorkloadEvent]:
    return [events.get(timeout=30) for _ in range(n)]


def test_watch_sends_every_state_change_in_commit_order_from_the_moment_it_opens(
    client: Client,
) -> None:
    (before,) = client.submit([cpu_spec(1, name="before")])
    placed(client, before.id)
    events, stream = watch(client)
    (w,) = client.submit([cpu_spec(1, name="watched")])
    placed(client, w.id)
    client.placement.CancelWorkload(pb.CancelWorkloadRequest(id=w.id))
    got = take(events, 3)
    stream.cancel()
    assert [(e.workload.id, e.previous_state, e.workload.state) for e in got] == [
        (w.id, pb.WORKLOAD_STATE_UNSPECIFIED, PENDING),
        (w.id, PENDING, PLACED),
        (w.id, PLACED, CANCELLED),
    ]
    assert got[1].workload.placements  # the event carries the workload as it is
    assert [e.sequence for e in got] == sorted(e.sequence for e in got)
    assert events.empty()  # nothing of "before": no snapshot


def test_watch_filters_by_tenant(client: Client) -> None:
    events, stream = watch(client, tenant="blue")
    client.submit([cpu_spec(1, tenant="red"), cpu_spec(1, tenant="blue", name="mine")])
    first = take(events, 1)[0]
    stream.cancel()
    assert first.workload.spec.tenant == "blue" and first.workload.spec.name == "mine"


def test_explain_gives_a_verdict_per_site_with_machine_readable_reasons(client: Client) -> None:
    # from "city" only "near" (1 ms) meets a 2 ms SLO; "green" is 4 ms away
    (w,) = client.submit([cpu_spec(1, origin="city", max_latency_ms=2.0)])
    placed(client, w.id)
    e = client.placement.ExplainWorkload(pb.ExplainWorkloadRequest(id=w.id))
    verdicts = {v.site: v for v in e.sites}
    assert set(verdicts) == {"near", "green"}
    assert verdicts["near"].feasible
    assert not verdicts["green"].feasible
    assert [r.code for r in verdicts["green"].reasons] == ["slo"]
    assert "4.0 ms" in verdicts["green"].reasons[0].message
    assert e.state == PLACED and list(e.placed_sites) == ["near"]
    assert "near" in e.summary


def test_explain_says_why_a_workload_is_pending(client: Client) -> None:
    (w,) = client.submit([cpu_spec(100)])
    until(lambda: client.get(w.id).state == UNSCHEDULABLE, 30, "unschedulable")
    e = client.placement.ExplainWorkload(pb.ExplainWorkloadRequest(id=w.id))
    assert e.summary.startswith("unschedulable")
    assert all(not v.feasible and v.reasons[0].code == "size" for v in e.sites)


def test_list_sites_reports_capacity_and_allocation_by_the_api_conventions(
    client: Client, tiny: Scenario
) -> None:
    share = pb.WorkloadSpec(
        tenant="t", resources=pb.Resources(cpu_millis=1000, memory_mib=1024, gpu_millis=300)
    )
    ws = client.submit([share, share, cpu_spec(2)])
    for w in ws:
        placed(client, w.id)
    resp = client.cluster.ListSites(pb.ListSitesRequest(include_nodes=True))
    sites = {s.name: s for s in resp.sites}
    green = sites["green"]
    assert green.capacity == pb.Resources(
        cpu_millis=3 * 4000 + 8000, memory_mib=3 * 8192 + 65536, gpus=2, gpu_millis=2000
    )
    # two 300-milli shares packed on one physical GPU (best fit keeps the other GPU free)
    assert green.allocated.gpu_millis == 600 and green.allocated.gpus == 1
    total_cpu = sum(s.allocated.cpu_millis for s in resp.sites)
    assert total_cpu == 4000
    assert len([n for s in resp.sites for n in s.nodes]) == sum(p.count for p in tiny.pools)
    assert green.latency_ms["far"] == 1.0
    assert green.price_cny_per_kwh == 0.5 and green.pue == 1.1
    assert sum(s.power_watts for s in resp.sites) > 0
    without = client.cluster.ListSites(pb.ListSitesRequest())
    assert all(len(s.nodes) == 0 for s in without.sites)


def test_health_is_serving_and_reflection_lists_the_services(
    idle_server: tuple[Valley, Client],
) -> None:
    _, client = idle_server
    health = health_pb2_grpc.HealthStub(client.channel)
    for name in ("", "valley.v1.PlacementService", "valley.v1.ClusterService"):
        status = health.Check(health_pb2.HealthCheckRequest(service=name)).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(client.channel)
    (resp,) = list(
        stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    )
    names = {s.name for s in resp.list_services_response.service}
    assert {
        "valley.v1.PlacementService",
        "valley.v1.ClusterService",
        "grpc.health.v1.Health",
    } <= names


def test_a_request_that_cannot_be_parsed_is_invalid_argument_not_internal(
    idle_client: Client,
) -> None:
    raw = idle_client.channel.unary_unary(
        "/valley.v1.PlacementService/SubmitWorkloads",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    # field 1 (request_id, a string) holding bytes that are not UTF-8
    code, _ = code_of(lambda: raw(b"\x0a\x02\xff\xfe"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert idle_client.all_workloads() == []


def test_an_expired_deadline_stores_nothing(idle_client: Client) -> None:
    # regression: the server sees a microsecond deadline rounded up to half a millisecond, and
    # used to store about one such request in seven although the client had given up on it
    for _ in range(20):
        code, _ = code_of(
            lambda: idle_client.placement.SubmitWorkloads(
                pb.SubmitWorkloadsRequest(workloads=[cpu_spec(1)]), timeout=0.000001
            )
        )
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert idle_client.all_workloads() == []


def test_the_submit_response_shows_each_workload_as_get_returns_it(client: Client) -> None:
    full = pb.WorkloadSpec(
        tenant="acme",
        name="full",
        resources=pb.Resources(cpu_millis=1500, memory_mib=2048, gpu_millis=250),
        replicas=2,
        origin="far",
        max_latency_ms=3.5,
        priority=3,
        kind=pb.WORKLOAD_KIND_SERVICE,
        duration_s=3600,
        allowed_sites=["green"],
        gpu_models=["A800"],
        labels={"team": "ml"},
    )
    full.deadline.FromNanoseconds(1_900_000_000_123_456_789)  # nanoseconds are kept to the us
    (accepted,) = client.submit([full])
    stored = client.get(accepted.id)
    assert accepted.spec == stored.spec
    assert accepted.created_at == stored.created_at
    assert stored.spec.deadline.nanos == 123_456_000
