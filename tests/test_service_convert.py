"""Watch events encoded for the stream are the messages ``event_to_proto`` builds, byte for
byte where protobuf's own output is deterministic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler.domain import (
    Cost,
    ReplicaPlacement,
    Resources,
    Topology,
    Workload,
    WorkloadKind,
    WorkloadSpec,
    WorkloadState,
)
from scheduler.service import convert
from scheduler.store import WorkloadEvent

S = WorkloadState
T0 = datetime(2025, 7, 1, 4, 0, 0, 123456, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

PLAIN = WorkloadSpec(tenant="acme", name="web", resources=Resources(500, 1024))
FULL = WorkloadSpec(
    tenant="acme",
    name="trainer",
    resources=Resources(8000, 65536, 2, 0),
    replicas=3,
    origin="city",
    max_latency_ms=4.5,
    priority=-7,
    kind=WorkloadKind.BATCH,
    duration_s=60,
    deadline=T0 + timedelta(hours=2),
    allowed_sites=("green", "near"),
    topology=Topology.SPREAD,
    min_sites=2,
    gpu_models=("A800",),
    labels={"team": "ml"},
)

EVENTS = {
    "created": WorkloadEvent(
        1, Workload("w-1", PLAIN, S.PENDING, created_at=T0), S.UNSPECIFIED, T0
    ),
    "placed, replica 0 at 0 ms": WorkloadEvent(
        2,
        Workload(
            "w-1",
            PLAIN,
            S.PLACED,
            (ReplicaPlacement(0, "near", "near/cpu-0000", 0.0, (), T0),),
            "",
            T0,
            T0 + timedelta(seconds=1),
            Cost(0.25, 0.125, 30.0),
        ),
        S.PENDING,
        T0 + timedelta(seconds=1),
    ),
    "placed on GPUs, every field": WorkloadEvent(
        2**40,
        Workload(
            "w-2",
            FULL,
            S.PLACED,
            (
                ReplicaPlacement(0, "green", "green/gpu-0000", 4.0, (0, 1), T0),
                ReplicaPlacement(1, "green", "green/gpu-0000", 4.0, (2, 3), T0),
                ReplicaPlacement(2, "near", "near/gpu-0007", 1.5, (300, 7), T0),
            ),
            "",
            T0,
            T0,
            Cost(1.5, 0.0, 900.0),
        ),
        S.PENDING,
        T0,
    ),
    "placed on a node whose name is not ASCII, a cost of power only": WorkloadEvent(
        3,
        Workload(
            "w-5",
            PLAIN,
            S.PLACED,
            (ReplicaPlacement(1, "北京", "北京/cpu-0001", 0.5, (), T0),),
            "",
            T0,
            T0,
            Cost(0.0, 0.0, 12.5),
        ),
        S.PENDING,
        T0,
    ),
    "unschedulable with a reason, no times": WorkloadEvent(
        7,
        Workload("w-3", FULL, S.UNSCHEDULABLE, reason="slo: RTT 4.0 ms > SLO 2.0 ms — 全部"),
        S.PENDING,
        EPOCH,
    ),
    "cancelled at the epoch": WorkloadEvent(
        8, Workload("w-4", PLAIN, S.CANCELLED, created_at=EPOCH), S.PLACED, EPOCH
    ),
}


@pytest.mark.parametrize("event", EVENTS.values(), ids=EVENTS.keys())
def test_an_encoded_event_is_the_message_event_to_proto_builds(event: WorkloadEvent) -> None:
    encoder = convert.EventEncoder()
    expected = convert.event_to_proto(event)
    for _ in range(2):  # built, then from the cache
        data = encoder.encode(event)
        assert pb.WorkloadEvent.FromString(data) == expected
        if not event.workload.spec.labels:  # maps are the only unordered part
            assert data == expected.SerializeToString()


def test_an_event_of_a_requested_spec_carries_the_request_message() -> None:
    request = pb.SubmitWorkloadsRequest(
        workloads=[
            pb.WorkloadSpec(tenant="acme", name="web", resources=pb.Resources(cpu_millis=500)),
            pb.WorkloadSpec(tenant="acme", name="late", resources=pb.Resources(cpu_millis=500)),
        ]
    )
    request.workloads[1].deadline.FromNanoseconds(1_750_000_000_123_456_789)
    specs = [convert.spec_from_proto(m) for m in request.workloads]
    encoder = convert.EventEncoder()
    encoder.requested(specs, request.workloads)
    for spec in specs:
        e = WorkloadEvent(1, Workload("w-1", spec, S.PENDING, created_at=T0), S.UNSPECIFIED, T0)
        got = pb.WorkloadEvent.FromString(encoder.encode(e))
        assert got == convert.event_to_proto(e)
    # the deadline as stored (microseconds), not as requested (nanoseconds)
    assert got.workload.spec.deadline.nanos == 123_456_000


def test_the_encoder_forgets_its_oldest_parts_and_still_encodes_them() -> None:
    encoder = convert.EventEncoder(max_entries=2)
    specs = [WorkloadSpec(tenant="acme", name=f"w{i}", resources=Resources(1, 1)) for i in range(4)]
    events = [
        WorkloadEvent(i + 1, Workload(f"w-{i}", s, created_at=T0 + timedelta(seconds=i)), S(0), T0)
        for i, s in enumerate(specs)
    ]
    for e in events + events:
        assert pb.WorkloadEvent.FromString(encoder.encode(e)) == convert.event_to_proto(e)
    assert len(encoder._specs) == 2 and len(encoder._times) == 2
