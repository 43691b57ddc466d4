"""Watch streams for clients that follow many changes: WatchWorkloadBatches (several events per
message) and the ``states`` filter, over real gRPC on the tiny scenario."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler._proto.valley.v1 import placement_pb2_grpc as pb_grpc
from scheduler.bench.noop_server import create_noop_server
from scheduler.domain import Scenario
from scheduler.service.convert import event_batches
from tests.test_service_support import PENDING, PLACED, Client, serve, until


@pytest.fixture(scope="module")
def client(tiny: Scenario, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with serve(tiny, Path(tmp_path_factory.mktemp("watch"))) as (_, c):
        yield c


def small(name: str, tenant: str = "acme") -> pb.WorkloadSpec:
    """A workload the tiny scenario has room for hundreds of times over."""
    return pb.WorkloadSpec(
        tenant=tenant, name=name, resources=pb.Resources(cpu_millis=50, memory_mib=64)
    )


def follow(stream: Any) -> queue.Queue[Any]:
    """Every message of an open stream, as it arrives, in a queue."""
    stream.initial_metadata()  # the server has subscribed: every later change is sent
    messages: queue.Queue[Any] = queue.Queue()

    def pump() -> None:
        try:
            for m in stream:
                messages.put(m)
        except grpc.RpcError:
            pass

    threading.Thread(target=pump, daemon=True).start()
    return messages


def drain(messages: queue.Queue[Any], events_of: Any, n: int) -> list[pb.WorkloadEvent]:
    out: list[pb.WorkloadEvent] = []
    while len(out) < n:
        out += events_of(messages.get(timeout=30))
    return out


def key(e: pb.WorkloadEvent) -> tuple[int, str, int, int]:
    return (e.sequence, e.workload.id, e.previous_state, e.workload.state)


def test_batched_stream_carries_the_same_events_as_the_one_per_message_stream(
    client: Client,
) -> None:
    one = client.placement.WatchWorkloads(pb.WatchWorkloadsRequest())
    batched = client.placement.WatchWorkloadBatches(pb.WatchWorkloadsRequest())
    singles, batches = follow(one), follow(batched)
    ws = client.submit([small(f"b{i}") for i in range(30)])
    until(lambda: all(client.get(w.id).state == PLACED for w in ws), 30, "placed")
    got_one = drain(singles, lambda e: [e], 60)
    got_batched = drain(batches, lambda m: list(m.events), 60)
    one.cancel()
    batched.cancel()
    assert [key(e) for e in got_batched] == [key(e) for e in got_one]
    assert got_batched == got_one  # whole events, workload and time included
    assert [e.sequence for e in got_batched] == sorted(e.sequence for e in got_batched)
    assert {e.workload.id for e in got_batched} == {w.id for w in ws}


def test_a_submission_committed_at_once_arrives_in_one_batch(client: Client) -> None:
    stream = client.placement.WatchWorkloadBatches(
        pb.WatchWorkloadsRequest(states=[pb.WORKLOAD_STATE_PENDING])
    )
    messages = follow(stream)
    ws = client.submit([small(f"one-{i}") for i in range(20)])
    first = messages.get(timeout=30)
    stream.cancel()
    until(lambda: all(client.get(w.id).state == PLACED for w in ws), 30, "placed")
    assert [e.workload.id for e in first.events] == [w.id for w in ws]


def test_watching_placed_only_skips_every_other_state_change(client: Client) -> None:
    stream = client.placement.WatchWorkloads(
        pb.WatchWorkloadsRequest(states=[pb.WORKLOAD_STATE_PLACED])
    )
    messages = follow(stream)
    ws = client.submit([small(f"p{i}") for i in range(5)])
    until(lambda: all(client.get(w.id).state == PLACED for w in ws), 30, "placed")
    client.placement.CancelWorkload(pb.CancelWorkloadRequest(id=ws[0].id))
    (sentinel,) = client.submit([small("sentinel")])
    got: list[pb.WorkloadEvent] = []
    while sentinel.id not in {e.workload.id for e in got}:
        got.append(messages.get(timeout=30))
    stream.cancel()
    # neither the creations nor the cancel came through: the placements only
    assert all(e.previous_state == PENDING and e.workload.state == PLACED for e in got)
    assert {w.id for w in ws} <= {e.workload.id for e in got}
    assert len(got) == len({e.workload.id for e in got})


def test_the_states_filter_combines_with_the_tenant_filter(client: Client) -> None:
    stream = client.placement.WatchWorkloadBatches(
        pb.WatchWorkloadsRequest(tenant="blue", states=[pb.WORKLOAD_STATE_PLACED])
    )
    messages = follow(stream)
    client.submit([small("theirs", tenant="red"), small("mine", tenant="blue")])
    got = drain(messages, lambda m: list(m.events), 1)
    stream.cancel()
    assert [(e.workload.spec.tenant, e.workload.spec.name, e.workload.state) for e in got] == [
        ("blue", "mine", PLACED)
    ]


@pytest.mark.parametrize("method", ["WatchWorkloads", "WatchWorkloadBatches"])
@pytest.mark.parametrize(
    ("states", "field"),
    [([pb.WORKLOAD_STATE_UNSPECIFIED], "states[0]"), ([pb.WORKLOAD_STATE_PLACED, 99], "states[1]")],
)
def test_an_unknown_state_to_watch_is_invalid_argument_naming_it(
    client: Client, method: str, states: list[int], field: str
) -> None:
    stream = getattr(client.placement, method)(
        pb.WatchWorkloadsRequest(states=states)  # type: ignore[arg-type]
    )
    with pytest.raises(grpc.RpcError) as e:
        next(iter(stream))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (e.value.details() or "").startswith(field)


def encoded(i: int, size: int) -> bytes:
    return pb.WorkloadEvent(
        workload=pb.Workload(id=f"w{i}", reason="x" * size), sequence=i + 1
    ).SerializeToString()


def test_event_batches_keep_every_event_in_order_within_the_size_limit() -> None:
    events = [encoded(i, 300) for i in range(10)]
    messages = list(event_batches(events, limit=1000))
    decoded = [pb.WorkloadEventBatch.FromString(m) for m in messages]
    assert [e.SerializeToString() for d in decoded for e in d.events] == events
    assert len(messages) > 1 and all(len(m) <= 1000 for m in messages)
    assert all(d.events for d in decoded)


def test_an_event_larger_than_the_limit_travels_alone() -> None:
    big, small = encoded(0, 5000), encoded(1, 10)
    messages = list(event_batches([small, big, small], limit=1000))
    decoded = [[e.sequence for e in pb.WorkloadEventBatch.FromString(m).events] for m in messages]
    assert decoded == [[2], [1], [2]]
    assert list(event_batches([])) == []


def test_the_noop_server_serves_the_same_watch_requests() -> None:
    server, port, placement = create_noop_server("127.0.0.1:0", max_workers=8)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = pb_grpc.PlacementServiceStub(channel)
        stream = stub.WatchWorkloadBatches(
            pb.WatchWorkloadsRequest(tenant="blue", states=[pb.WORKLOAD_STATE_PLACED])
        )
        messages = follow(stream)
        specs = [small("theirs", tenant="red"), small("mine", tenant="blue")]
        answer = stub.SubmitWorkloads(pb.SubmitWorkloadsRequest(workloads=specs))
        got = drain(messages, lambda m: list(m.events), 1)
        stream.cancel()
        assert [(e.workload.id, e.workload.state) for e in got] == [
            (answer.workloads[1].id, PLACED)
        ]
    finally:
        placement.close()
        channel.close()
        server.stop(0).wait()
