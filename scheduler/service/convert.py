"""Protos <-> domain objects: the only module that knows both.

Parsing a request names the field of anything it cannot represent (an unknown enum value, a
timestamp out of range); the rules of the domain are checked by ``validation``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler.domain import (
    Cost,
    Explanation,
    Reason,
    ReplicaPlacement,
    Resources,
    SiteVerdict,
    Topology,
    ValidationError,
    Workload,
    WorkloadKind,
    WorkloadSpec,
    WorkloadState,
)
from scheduler.service.sites import NodeSummary, SiteSummary
from scheduler.store import WorkloadEvent

# ----------------------------------------------------------------------------- time


def timestamp(t: datetime | None, out: Timestamp) -> None:
    if t is not None:
        out.FromDatetime(t.astimezone(UTC))


def _instant(ts: Timestamp, field: str) -> datetime:
    if not 0 <= ts.nanos <= 999_999_999:
        raise ValidationError(field, f"nanos must be 0..999999999 (got {ts.nanos})")
    try:
        return ts.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        raise ValidationError(field, f"timestamp out of range (seconds={ts.seconds})") from None


# ----------------------------------------------------------------------------- requests


def _enum(value: int, enum: type[WorkloadKind] | type[Topology], field: str) -> int:
    try:
        return enum(value)
    except ValueError:
        known = ", ".join(f"{int(m)} ({m.name})" for m in enum)
        raise ValidationError(field, f"unknown value {value} (known: {known})") from None


def resources_from_proto(m: pb.Resources) -> Resources:
    return Resources(
        cpu_millis=int(m.cpu_millis),
        memory_mib=int(m.memory_mib),
        gpus=int(m.gpus),
        gpu_millis=int(m.gpu_millis),
    )


def spec_from_proto(m: pb.WorkloadSpec, field: str = "") -> WorkloadSpec:
    """The domain spec of a request message; ``field`` is its path (``workloads[3]``)."""
    p = f"{field}." if field else ""
    return WorkloadSpec(
        tenant=m.tenant,
        name=m.name,
        resources=resources_from_proto(m.resources),
        replicas=int(m.replicas),
        origin=m.origin,
        max_latency_ms=float(m.max_latency_ms),
        priority=int(m.priority),
        kind=WorkloadKind(_enum(m.kind, WorkloadKind, f"{p}kind")),
        duration_s=int(m.duration_s),
        deadline=_instant(m.deadline, f"{p}deadline") if m.HasField("deadline") else None,
        allowed_sites=tuple(m.allowed_sites),
        topology=Topology(_enum(m.topology, Topology, f"{p}topology")),
        min_sites=int(m.min_sites),
        gpu_models=tuple(m.gpu_models),
        labels=dict(m.labels),
    )


def states_from_proto(values: Iterable[int]) -> list[WorkloadState]:
    out: list[WorkloadState] = []
    for i, v in enumerate(values):
        try:
            s = WorkloadState(v)
        except ValueError:
            raise ValidationError(f"states[{i}]", f"unknown state {v}") from None
        if s == WorkloadState.UNSPECIFIED:
            raise ValidationError(f"states[{i}]", "UNSPECIFIED is not a state to filter by")
        out.append(s)
    return out


def request_hash(request: pb.SubmitWorkloadsRequest) -> str:
    """A digest of the request as the client meant it (deterministic serialisation), to tell
    a retry of the same request from a different request reusing its request_id."""
    data = request.SerializeToString(deterministic=True)
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------- responses


def resources_to_proto(r: Resources, out: pb.Resources) -> None:
    out.cpu_millis = r.cpu_millis
    out.memory_mib = r.memory_mib
    out.gpus = r.gpus
    out.gpu_millis = r.gpu_millis


def spec_to_proto(s: WorkloadSpec, out: pb.WorkloadSpec) -> None:
    out.tenant = s.tenant
    out.name = s.name
    resources_to_proto(s.resources, out.resources)
    out.replicas = s.replicas
    out.origin = s.origin
    out.max_latency_ms = s.max_latency_ms
    out.priority = s.priority
    out.kind = int(s.kind)  # type: ignore[assignment]
    out.duration_s = s.duration_s
    timestamp(s.deadline, out.deadline)
    out.allowed_sites.extend(s.allowed_sites)
    out.topology = int(s.topology)  # type: ignore[assignment]
    out.min_sites = s.min_sites
    out.gpu_models.extend(s.gpu_models)
    out.labels.update(s.labels)


def cost_to_proto(c: Cost, out: pb.Cost) -> None:
    out.energy_cny_per_hour = c.energy_cny_per_hour
    out.carbon_kg_per_hour = c.carbon_kg_per_hour
    out.power_watts = c.power_watts


def placement_to_proto(p: ReplicaPlacement, out: pb.ReplicaPlacement) -> None:
    out.replica = p.replica
    out.site = p.site
    out.node = p.node
    out.latency_ms = p.latency_ms
    timestamp(p.start_time, out.start_time)
    out.gpu_indices.extend(p.gpu_indices)


def workload_to_proto(w: Workload, out: pb.Workload | None = None) -> pb.Workload:
    out = pb.Workload() if out is None else out
    out.id = w.id
    spec_to_proto(w.spec, out.spec)
    out.state = int(w.state)  # type: ignore[assignment]
    for p in w.placements:
        placement_to_proto(p, out.placements.add())
    out.reason = w.reason
    timestamp(w.created_at, out.created_at)
    timestamp(w.placed_at, out.placed_at)
    cost_to_proto(w.cost, out.cost)
    return out


def submit_response(workloads: Sequence[Workload]) -> pb.SubmitWorkloadsResponse:
    out = pb.SubmitWorkloadsResponse()
    for w in workloads:
        workload_to_proto(w, out.workloads.add())
    return out


def accepted_response(
    request: pb.SubmitWorkloadsRequest, workloads: Sequence[Workload]
) -> pb.SubmitWorkloadsResponse:
    """The response to a request whose specs were all just accepted as ``workloads`` (same
    order): the request's own spec messages are copied rather than rebuilt from the domain."""
    out = pb.SubmitWorkloadsResponse()
    for m, w in zip(request.workloads, workloads, strict=True):
        item = out.workloads.add(id=w.id, state=int(w.state))
        item.spec.CopyFrom(m)
        if w.spec.deadline is not None:  # as stored: microseconds
            timestamp(w.spec.deadline, item.spec.deadline)
        timestamp(w.created_at, item.created_at)
    return out


def list_response(workloads: Sequence[Workload], next_page_token: str) -> pb.ListWorkloadsResponse:
    out = pb.ListWorkloadsResponse(next_page_token=next_page_token)
    for w in workloads:
        workload_to_proto(w, out.workloads.add())
    return out


def event_to_proto(e: WorkloadEvent) -> pb.WorkloadEvent:
    out = pb.WorkloadEvent(sequence=e.sequence, previous_state=int(e.previous_state))  # type: ignore[arg-type]
    workload_to_proto(e.workload, out.workload)
    timestamp(e.time, out.time)
    return out


def _reason_to_proto(r: Reason, out: pb.Reason) -> None:
    out.code = r.code
    out.message = r.message
    out.resource = r.resource
    out.requested = r.requested
    out.largest_free = r.largest_free


def _verdict_to_proto(v: SiteVerdict, out: pb.SiteVerdict) -> None:
    out.site = v.site
    out.feasible = v.feasible
    for r in v.reasons:
        _reason_to_proto(r, out.reasons.add())
    cost_to_proto(v.cost, out.cost)


def explanation_to_proto(
    e: Explanation, state: WorkloadState, placed_sites: Sequence[str]
) -> pb.Explanation:
    out = pb.Explanation(summary=e.summary, state=int(state))  # type: ignore[arg-type]
    for v in e.sites:
        _verdict_to_proto(v, out.sites.add())
    out.placed_sites.extend(placed_sites)
    return out


def _node_to_proto(n: NodeSummary, out: pb.Node) -> None:
    out.name = n.name
    out.pool = n.pool
    resources_to_proto(n.capacity, out.capacity)
    resources_to_proto(n.allocated, out.allocated)
    out.gpu_model = n.gpu_model


def sites_response(
    sites: Sequence[SiteSummary], hour: int, month: int, latency: Mapping[str, Mapping[str, float]]
) -> pb.ListSitesResponse:
    out = pb.ListSitesResponse(hour=hour, month=month)
    for s in sites:
        m = out.sites.add()
        m.name = s.name
        m.pue = s.pue
        m.latency_ms.update(latency[s.name])
        resources_to_proto(s.capacity, m.capacity)
        resources_to_proto(s.allocated, m.allocated)
        m.price_cny_per_kwh = s.price_cny_per_kwh
        m.carbon_kg_per_kwh = s.carbon_kg_per_kwh
        m.power_watts = s.cost.power_watts
        m.energy_cny_per_hour = s.cost.energy_cny_per_hour
        m.carbon_kg_per_hour = s.cost.carbon_kg_per_hour
        for n in s.nodes:
            _node_to_proto(n, m.nodes.add())
    return out
