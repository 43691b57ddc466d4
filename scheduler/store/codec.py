"""Row values <-> domain values: specs as compact JSON, instants as UTC epoch seconds."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from scheduler.domain import Resources, Topology, WorkloadKind, WorkloadSpec


def epoch(t: datetime | None) -> float | None:
    return None if t is None else t.timestamp()


def instant(v: float | None) -> datetime | None:
    return None if v is None else datetime.fromtimestamp(float(v), UTC)


# one encoder for every spec: json.dumps would build a new one per call with these options
_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)


def spec_to_json(s: WorkloadSpec) -> str:
    if s.deadline is None and not (s.allowed_sites or s.gpu_models or s.labels):
        try:
            return _plain_spec_to_json(s)
        except (TypeError, ValueError):  # a number json would spell otherwise (5 for 5.0 ms)
            pass
    return _spec_to_json(s)


_quote = json.encoder.encode_basestring_ascii  # json.dumps's own (ensure_ascii)
_float = float.__repr__  # json.dumps's own, for a finite float


def _plain_spec_to_json(s: WorkloadSpec) -> str:
    """``_spec_to_json`` of a spec without deadline, site or GPU lists and labels (almost every
    spec, on the submit path) written directly: the same text, several times faster."""
    r = s.resources
    ms = s.max_latency_ms
    if not math.isfinite(ms):
        raise ValueError("json spells it NaN or Infinity")
    return (
        f'{{"tenant":{_quote(s.tenant)},"name":{_quote(s.name)},'
        f'"resources":[{r.cpu_millis:d},{r.memory_mib:d},{r.gpus:d},{r.gpu_millis:d}],'
        f'"replicas":{s.replicas:d},"origin":{_quote(s.origin)},"max_latency_ms":{_float(ms)},'
        f'"priority":{s.priority:d},"kind":{int(s.kind):d},"duration_s":{s.duration_s:d},'
        f'"deadline":null,"allowed_sites":[],"topology":{int(s.topology):d},'
        f'"min_sites":{s.min_sites:d},"gpu_models":[],"labels":{{}},'
        f'"max_replicas_per_node":{s.max_replicas_per_node:d}}}'
    )


def _spec_to_json(s: WorkloadSpec) -> str:
    r = s.resources
    data: dict[str, Any] = {
        "tenant": s.tenant,
        "name": s.name,
        "resources": [r.cpu_millis, r.memory_mib, r.gpus, r.gpu_millis],
        "replicas": s.replicas,
        "origin": s.origin,
        "max_latency_ms": s.max_latency_ms,
        "priority": s.priority,
        "kind": int(s.kind),
        "duration_s": s.duration_s,
        "deadline": epoch(s.deadline),
        "allowed_sites": s.allowed_sites,  # tuples encode as JSON arrays
        "topology": int(s.topology),
        "min_sites": s.min_sites,
        "gpu_models": s.gpu_models,
        "labels": s.labels if type(s.labels) is dict else dict(s.labels),
        "max_replicas_per_node": s.max_replicas_per_node,
    }
    return _ENCODER.encode(data)


def spec_from_json(text: str) -> WorkloadSpec:
    d = json.loads(text)
    cpu, mem, gpus, gpu_millis = d["resources"]
    return WorkloadSpec(
        tenant=d["tenant"],
        name=d["name"],
        resources=Resources(cpu, mem, gpus, gpu_millis),
        replicas=d["replicas"],
        origin=d["origin"],
        max_latency_ms=d["max_latency_ms"],
        priority=d["priority"],
        kind=WorkloadKind(d["kind"]),
        duration_s=d["duration_s"],
        deadline=instant(d["deadline"]),
        allowed_sites=tuple(d["allowed_sites"]),
        topology=Topology(d["topology"]),
        min_sites=d["min_sites"],
        gpu_models=tuple(d["gpu_models"]),
        labels=dict(d["labels"]),
        max_replicas_per_node=d.get("max_replicas_per_node", 0),  # rows written before it
    )


def gpus_to_text(indices: tuple[int, ...]) -> str:
    if not indices:  # CPU work: the common case, on the hot path of every cycle
        return ""
    return ",".join(map(str, indices))


def gpus_from_text(text: str | None) -> tuple[int, ...]:
    return tuple(int(i) for i in text.split(",")) if text else ()
