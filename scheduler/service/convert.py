"""Protos <-> domain objects: the only module that knows both.

Parsing a request names the field of anything it cannot represent (an unknown enum value, a
timestamp out of range); the rules of the domain are checked by ``validation``.
"""

from __future__ import annotations

import hashlib
import struct
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler.domain import (
    Cost,
    DrainPlan,
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


# enum members by wire value: one dict lookup per spec on the submit path
_KINDS: dict[int, WorkloadKind] = {int(k): k for k in WorkloadKind}
_TOPOLOGIES: dict[int, Topology] = {int(t): t for t in Topology}


def spec_from_proto(m: pb.WorkloadSpec, field: str = "") -> WorkloadSpec:
    """The domain spec of a request message; ``field`` is its path (``workloads[3]``)."""
    # the submit path runs this for every workload: protobuf already hands out Python ints,
    # floats and strs, and empty repeated fields and maps are the common case
    kind = _KINDS.get(m.kind)
    if kind is None:
        kind = WorkloadKind(_enum(m.kind, WorkloadKind, f"{field}.kind" if field else "kind"))
    topology = _TOPOLOGIES.get(m.topology)
    if topology is None:
        topology = Topology(
            _enum(m.topology, Topology, f"{field}.topology" if field else "topology")
        )
    r = m.resources
    return WorkloadSpec(
        tenant=m.tenant,
        name=m.name,
        resources=Resources(r.cpu_millis, r.memory_mib, r.gpus, r.gpu_millis),
        replicas=m.replicas,
        origin=m.origin,
        max_latency_ms=m.max_latency_ms,
        priority=m.priority,
        kind=kind,
        duration_s=m.duration_s,
        deadline=(
            _instant(m.deadline, f"{field}.deadline" if field else "deadline")
            if m.HasField("deadline")
            else None
        ),
        allowed_sites=tuple(m.allowed_sites) if m.allowed_sites else (),
        topology=topology,
        min_sites=m.min_sites,
        gpu_models=tuple(m.gpu_models) if m.gpu_models else (),
        labels=dict(m.labels) if m.labels else {},
        max_replicas_per_node=m.max_replicas_per_node,
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
    out.max_replicas_per_node = s.max_replicas_per_node


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
    add = out.workloads.add
    created: dict[datetime | None, Timestamp] = {}  # one submission: one creation time
    for m, w in zip(request.workloads, workloads, strict=True):
        ts = created.get(w.created_at)
        if ts is None:
            ts = created[w.created_at] = Timestamp()
            timestamp(w.created_at, ts)
        if w.created_at is None:
            item = add(id=w.id, state=int(w.state), spec=m)
        else:
            item = add(id=w.id, state=int(w.state), spec=m, created_at=ts)
        if w.spec.deadline is not None:  # as stored: microseconds
            timestamp(w.spec.deadline, item.spec.deadline)
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


class EventEncoder:
    """Events as the bytes of ``event_to_proto(e)``, built for watch streams, which send every
    event to every watcher: the parts events share are encoded once and cached (a workload's
    spec, found by the identity of its ``WorkloadSpec``, which every event of a workload carries;
    the timestamp of an instant, which every event of one commit has), the rest is written
    field by field in the protobuf wire format. Bounded (oldest entries go first) and safe to
    share between threads."""

    def __init__(self, max_entries: int = 50_000) -> None:
        # id(spec) -> (spec, its message or bytes): holding the spec keeps its id from being
        # reused while the entry lives
        self._specs: OrderedDict[int, tuple[WorkloadSpec, pb.WorkloadSpec | bytes]] = OrderedDict()
        self._times: OrderedDict[datetime, bytes] = OrderedDict()
        self._texts: OrderedDict[tuple[bytes, str], bytes] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()

    def requested(self, specs: Sequence[WorkloadSpec], messages: Iterable[pb.WorkloadSpec]) -> None:
        """Remember the request messages that ``specs`` were made from, as the submit response
        shows them (``accepted_response``), unless the store normalises the spec (a deadline is
        kept to the microsecond)."""
        self._keep(
            self._specs,
            ((id(s), (s, m)) for s, m in zip(specs, messages, strict=True) if s.deadline is None),
        )

    def encode(self, e: WorkloadEvent) -> bytes:
        w = self._workload(e.workload)
        n = len(w)
        out = [b"\x0a", _SMALL_VARINTS[n] if n < 128 else _varint(n), w]
        if e.previous_state:
            out += (b"\x10", _varint(int(e.previous_state)))
        if e.sequence:
            out += (b"\x18", _varint(e.sequence))
        t = self._time(e.time)
        out += (b"\x22", _SMALL_VARINTS[len(t)], t)  # a Timestamp is at most 24 bytes
        return b"".join(out)

    def _workload(self, w: Workload) -> bytes:
        out: list[bytes] = []
        if w.id:
            text = w.id.encode()
            n = len(text)
            out += (b"\x0a", _SMALL_VARINTS[n] if n < 128 else _varint(n), text)
        spec = self._spec(w.spec)
        n = len(spec)
        out += (b"\x12", _SMALL_VARINTS[n] if n < 128 else _varint(n), spec)
        if w.state:
            out += (b"\x18", _varint(int(w.state)))
        for p in w.placements:
            rep = self._placement(p)
            n = len(rep)
            out += (b"\x22", _SMALL_VARINTS[n] if n < 128 else _varint(n), rep)
        if w.reason:
            text = w.reason.encode()
            out += (b"\x2a", _varint(len(text)), text)
        if w.created_at is not None:
            t = self._time(w.created_at)
            out += (b"\x32", _SMALL_VARINTS[len(t)], t)
        if w.placed_at is not None:
            t = self._time(w.placed_at)
            out += (b"\x3a", _SMALL_VARINTS[len(t)], t)
        c = w.cost
        energy, carbon, power = c.energy_cny_per_hour, c.carbon_kg_per_hour, c.power_watts
        if energy and carbon and power:  # a placed workload's (-0.0 and 0.0 are false)
            out.append(_ALL_COSTS.pack(b"\x42\x1b\x09", energy, b"\x11", carbon, b"\x19", power))
        else:
            cost = b"".join(
                tag + d
                for tag, d in (
                    (b"\x09", _DOUBLE.pack(energy)),
                    (b"\x11", _DOUBLE.pack(carbon)),
                    (b"\x19", _DOUBLE.pack(power)),
                )
                if d != _ZERO_DOUBLE
            )
            out += (b"\x42", _SMALL_VARINTS[len(cost)], cost)
        return b"".join(out)

    def _placement(self, p: ReplicaPlacement) -> bytes:
        out: list[bytes] = []
        if p.replica:
            out += (b"\x08", _varint(p.replica))
        if p.site:
            out.append(self._text(b"\x12", p.site))
        if p.node:
            out.append(self._text(b"\x1a", p.node))
        d = _DOUBLE.pack(p.latency_ms)
        if d != _ZERO_DOUBLE:
            out += (b"\x21", d)
        if p.start_time is not None:
            t = self._time(p.start_time)
            out += (b"\x2a", _SMALL_VARINTS[len(t)], t)
        if p.gpu_indices:
            packed = b"".join(_varint(i) for i in p.gpu_indices)
            out += (b"\x32", _varint(len(packed)), packed)
        return b"".join(out)

    def _text(self, tag: bytes, text: str) -> bytes:
        """The field ``tag`` holding ``text`` (site and node names: few, and in every event of
        a placed workload)."""
        key = (tag, text)
        data = self._texts.get(key)
        if data is None:
            raw = text.encode()
            data = tag + _varint(len(raw)) + raw
            self._keep(self._texts, ((key, data),))
        return data

    def _spec(self, s: WorkloadSpec) -> bytes:
        entry = self._specs.get(id(s))
        if entry is not None and entry[0] is s:
            known = entry[1]
            if isinstance(known, bytes):
                return known
            data = known.SerializeToString()
        else:
            m = pb.WorkloadSpec()
            spec_to_proto(s, m)
            data = m.SerializeToString()
        self._keep(self._specs, ((id(s), (s, data)),))
        return data

    def _time(self, t: datetime) -> bytes:
        data = self._times.get(t)
        if data is None:
            m = Timestamp()
            timestamp(t, m)
            data = m.SerializeToString()
            self._keep(self._times, ((t, data),))
        return data

    def _keep(self, entries: OrderedDict[Any, Any], items: Iterable[tuple[Any, Any]]) -> None:
        with self._lock:
            for key, value in items:
                entries[key] = value
            while len(entries) > self._max:
                entries.popitem(last=False)


_DOUBLE = struct.Struct("<d")
_ZERO_DOUBLE = _DOUBLE.pack(0.0)
# field 8 of a Workload: a Cost message with all three fields set (27 bytes)
_ALL_COSTS = struct.Struct("<3sdsdsd")
_SMALL_VARINTS = [bytes((i,)) for i in range(128)]


def _varint(n: int) -> bytes:
    """``n`` as a protobuf varint (negative numbers as 64-bit two's complement)."""
    if 0 <= n < 128:
        return _SMALL_VARINTS[n]
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# a WorkloadEventBatch grows to about this size (a client's default receive limit is 4 MiB)
BATCH_MESSAGE_BYTES = 1 << 20


def event_batches(events: Sequence[bytes], limit: int = BATCH_MESSAGE_BYTES) -> Iterator[bytes]:
    """Encoded ``WorkloadEventBatch`` messages holding ``events`` (encoded ``WorkloadEvent``
    messages) in order: as many per message as fit in ``limit`` bytes, at least one."""
    parts: list[bytes] = []
    size = 0
    for e in events:
        if parts and size + len(e) > limit:
            yield b"".join(parts)
            parts, size = [], 0
        head = b"\x0a" + _varint(len(e))  # field 1 (events), length-delimited
        parts += (head, e)
        size += len(head) + len(e)
    if parts:
        yield b"".join(parts)


def _reason_to_proto(r: Reason, out: pb.Reason) -> None:
    out.code = r.code.value  # the API's code strings are ReasonCode's values
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


def node_to_proto(n: NodeSummary, out: pb.Node) -> None:
    out.name = n.name
    out.pool = n.pool
    resources_to_proto(n.capacity, out.capacity)
    resources_to_proto(n.allocated, out.allocated)
    out.gpu_model = n.gpu_model
    out.cordoned = n.cordoned
    out.rack = n.rack


def sites_response(
    sites: Sequence[SiteSummary],
    hour: int,
    month: int,
    latency: Mapping[str, Mapping[str, float]],
    reserved_from: datetime | None = None,
) -> pb.ListSitesResponse:
    out = pb.ListSitesResponse(hour=hour, month=month)
    timestamp(reserved_from, out.reserved_from)
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
        m.reserved_cores_by_hour.extend(s.reserved_cores_by_hour)
        for n in s.nodes:
            node_to_proto(n, m.nodes.add())
    return out


def move_plan_to_proto(plan: DrainPlan) -> pb.MovePlan:
    """A drain's (or a rebalance's) plan as ``MovePlan``."""
    out = pb.MovePlan(
        objective_before=plan.objective(plan.cost_before),
        objective_after=plan.objective(plan.cost_after),
    )
    for m in plan.moves:
        out.moves.add(
            workload_id=m.workload_id, replica=m.replica, from_node=m.from_node, to_node=m.to_node
        )
    for x in plan.stuck:
        out.stuck.add(workload_id=x.workload_id, replica=x.replica, node=x.node, reason=x.reason)
    cost_to_proto(plan.cost_before, out.cost_before)
    cost_to_proto(plan.cost_after, out.cost_after)
    if plan.objective_bound is not None:
        out.objective_bound = plan.objective_bound
    return out
