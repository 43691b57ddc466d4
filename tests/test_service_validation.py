"""Bad input gets INVALID_ARGUMENT naming the field, and nothing of the request is stored.
One case per line: the case's name, how it spoils a valid request, the field the error names."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler.domain import Scenario
from tests.test_service_support import Client, serve

Spoil = Callable[[pb.SubmitWorkloadsRequest], object]


def valid() -> pb.WorkloadSpec:
    return pb.WorkloadSpec(
        tenant="acme",
        name="web",
        resources=pb.Resources(cpu_millis=1000, memory_mib=1024),
        origin="city",
        max_latency_ms=5.0,
    )


def put(target: object, fields: dict[str, object]) -> None:
    for k, v in fields.items():
        setattr(target, k, v)


def spec(**fields: object) -> Spoil:
    """Set fields of the request's first spec."""
    return lambda r: put(r.workloads[0], fields)


def res(**fields: object) -> Spoil:
    """Set fields of the first spec's resources."""
    return lambda r: put(r.workloads[0].resources, fields)


def deadline(**fields: object) -> Spoil:
    return lambda r: put(r.workloads[0].deadline, fields)


def extend(name: str, *values: str) -> Spoil:
    return lambda r: getattr(r.workloads[0], name).extend(values)


def labels(**items: str) -> Spoil:
    return lambda r: r.workloads[0].labels.update(items)


def many_labels(n: int) -> Spoil:
    return lambda r: r.workloads[0].labels.update({f"k{i}": "v" for i in range(n)})


def more_workloads(n: int, bad: int = -1) -> Spoil:
    def spoil(r: pb.SubmitWorkloadsRequest) -> None:
        r.workloads.extend([valid() for _ in range(n)])
        if bad >= 0:
            r.workloads[bad].resources.memory_mib = -7

    return spoil


def request_id(value: str) -> Spoil:
    return lambda r: put(r, {"request_id": value})


R = "workloads[0].resources."
W = "workloads[0]."
SPREAD = pb.TOPOLOGY_SPREAD

CASES: list[tuple[str, Spoil, str]] = [
    ("negative cpu", res(cpu_millis=-1), R + "cpu_millis"),
    ("zero cpu", res(cpu_millis=0), R + "cpu_millis"),
    ("absurd cpu", res(cpu_millis=10**15), R + "cpu_millis"),
    ("zero memory", res(memory_mib=0), R + "memory_mib"),
    ("absurd memory", res(memory_mib=2**62), R + "memory_mib"),
    ("negative gpus", res(gpus=-2), R + "gpus"),
    ("absurd gpus", res(gpus=100_000), R + "gpus"),
    ("a whole GPU as millis", res(gpu_millis=1000), R + "gpu_millis"),
    ("gpus and gpu_millis", res(gpus=1, gpu_millis=500), R + "gpu_millis"),
    ("unknown origin", spec(origin="mars"), W + "origin"),
    ("SLO without origin", spec(origin=""), W + "origin"),
    ("unknown site", extend("allowed_sites", "near", "atlantis"), W + "allowed_sites[1]"),
    ("too many replicas", spec(replicas=10_001), W + "replicas"),
    ("negative replicas", spec(replicas=-1), W + "replicas"),
    ("empty tenant", spec(tenant=""), W + "tenant"),
    ("oversize tenant", spec(tenant="t" * 254), W + "tenant"),
    ("oversize name", spec(name="n" * 10_000), W + "name"),
    ("oversize label key", labels(**{"k" * 300: "v"}), W + "labels"),
    ("oversize label value", labels(k="v" * 300), W + "labels"),
    ("too many labels", many_labels(65), W + "labels"),
    ("oversize gpu model", extend("gpu_models", "m" * 300), W + "gpu_models[0]"),
    ("NaN SLO", spec(max_latency_ms=math.nan), W + "max_latency_ms"),
    ("infinite SLO", spec(max_latency_ms=math.inf), W + "max_latency_ms"),
    ("negative SLO", spec(max_latency_ms=-1.0), W + "max_latency_ms"),
    ("SPREAD over one site", spec(topology=SPREAD, replicas=3, min_sites=1), W + "min_sites"),
    ("SPREAD beyond replicas", spec(topology=SPREAD, replicas=2, min_sites=3), W + "min_sites"),
    ("unknown kind", spec(kind=7), W + "kind"),
    ("unknown topology", spec(topology=9), W + "topology"),
    ("negative duration", spec(duration_s=-5), W + "duration_s"),
    ("absurd duration", spec(duration_s=2**62), W + "duration_s"),
    ("absurd priority", spec(priority=2**31 - 1), W + "priority"),
    ("bad deadline nanos", deadline(nanos=-1), W + "deadline"),
    ("deadline out of range", deadline(seconds=2**62), W + "deadline"),
    ("deadline already past", deadline(seconds=1_000_000_000), W + "deadline"),
    ("bad fourth of five", more_workloads(4, bad=3), "workloads[3].resources.memory_mib"),
    ("over 1,000 workloads", more_workloads(1000), "workloads"),
    ("oversize request_id", request_id("r" * 254), "request_id"),
    ("NUL in tenant", spec(tenant="a\x00b"), W + "tenant"),
    ("NUL in a label", labels(k="v\x00"), W + "labels"),
    ("NUL in request_id", request_id("r\x00"), "request_id"),
]


@pytest.fixture(scope="module")
def client(tiny: Scenario, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with serve(tiny, Path(tmp_path_factory.mktemp("validation"))) as (_, c):
        yield c


@pytest.mark.parametrize(
    ("spoil", "field"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_invalid_argument_naming_the_field_and_stores_nothing(
    client: Client, spoil: Spoil, field: str
) -> None:
    request = pb.SubmitWorkloadsRequest(workloads=[valid()])
    spoil(request)
    stored_before = len(client.all_workloads())
    with pytest.raises(grpc.RpcError) as e:
        client.placement.SubmitWorkloads(request, timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = e.value.details() or ""
    assert details.startswith(field), details
    assert len(client.all_workloads()) == stored_before


def test_the_valid_request_of_the_table_is_accepted(client: Client) -> None:
    # the table's cases fail because of what they spoil, not because the base is bad
    request = pb.SubmitWorkloadsRequest(workloads=[valid()])
    (accepted,) = client.placement.SubmitWorkloads(request, timeout=30).workloads
    assert accepted.state == pb.WORKLOAD_STATE_PENDING
    client.placement.CancelWorkload(pb.CancelWorkloadRequest(id=accepted.id))


LIST_CASES: list[tuple[str, pb.ListWorkloadsRequest, str]] = [
    ("unknown state", pb.ListWorkloadsRequest(states=[42]), "states[0]"),  # type: ignore[list-item]
    ("unspecified state", pb.ListWorkloadsRequest(states=[0]), "states[0]"),  # type: ignore[list-item]
    ("negative page size", pb.ListWorkloadsRequest(page_size=-1), "page_size"),
]


@pytest.mark.parametrize(
    ("request_", "field"), [(c[1], c[2]) for c in LIST_CASES], ids=[c[0] for c in LIST_CASES]
)
def test_bad_list_requests_are_invalid_argument_naming_the_field(
    client: Client, request_: pb.ListWorkloadsRequest, field: str
) -> None:
    with pytest.raises(grpc.RpcError) as e:
        client.placement.ListWorkloads(request_, timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (e.value.details() or "").startswith(field)
