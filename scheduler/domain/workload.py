"""Workloads: what a tenant asks for (``WorkloadSpec``) and what became of it (``Workload``)."""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from scheduler.domain.errors import ValidationError, shorten
from scheduler.domain.resources import Resources
from scheduler.domain.scenario import Scenario

MAX_REPLICAS = 10_000
MAX_NAME = 253
MAX_LABELS = 64


class WorkloadKind(enum.IntEnum):
    UNSPECIFIED = 0
    SERVICE = 1
    BATCH = 2


class Topology(enum.IntEnum):
    UNSPECIFIED = 0
    GANG = 1  # all replicas in one site, all or nothing
    SPREAD = 2  # replicas in at least min_sites distinct sites


class WorkloadState(enum.IntEnum):
    UNSPECIFIED = 0
    PENDING = 1
    PLACED = 2
    UNSCHEDULABLE = 3
    CANCELLED = 4
    COMPLETED = 5
    PREEMPTED = 6


def per_node_limit(
    replicas: int, kind: int, max_replicas_per_node: int, default_spread: bool = True
) -> int:
    """The most replicas of a workload one node may hold (API.md, "Availability"), from the
    spec's fields (a proto's as well as a ``WorkloadSpec``'s): its own ``max_replicas_per_node``,
    else ``ceil(replicas / 2)`` for a SERVICE with 2 or more replicas (unless ``default_spread``
    is off), else the replica count (no limit)."""
    n = replicas or 1
    if max_replicas_per_node > 0:
        return min(max_replicas_per_node, n)
    if default_spread and kind == WorkloadKind.SERVICE and n >= 2:
        return (n + 1) // 2
    return n


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    tenant: str
    name: str = ""
    resources: Resources = field(default_factory=Resources)  # per replica
    replicas: int = 1  # 0 means 1
    origin: str = ""
    max_latency_ms: float = 0.0  # 0 = no SLO
    priority: int = 0  # higher wins
    kind: WorkloadKind = WorkloadKind.UNSPECIFIED
    duration_s: int = 0
    deadline: datetime | None = None
    allowed_sites: tuple[str, ...] = ()  # empty = any
    topology: Topology = Topology.UNSPECIFIED
    min_sites: int = 0
    gpu_models: tuple[str, ...] = ()  # empty = any
    labels: Mapping[str, str] = field(default_factory=dict)
    max_replicas_per_node: int = 0  # 0 = no limit of its own (see replicas_per_node_limit)

    @property
    def replica_count(self) -> int:
        return self.replicas or 1

    @property
    def replicas_per_node_limit(self) -> int:
        """At most this many replicas on one node (API.md, "Availability"): the spec's own
        ``max_replicas_per_node``, else for a SERVICE with 2 or more replicas ``ceil(replicas
        / 2)`` (one node never holds them all), else no limit (the replica count)."""
        return self.limit_per_node(default_spread=True)

    def limit_per_node(self, default_spread: bool = True) -> int:
        """``replicas_per_node_limit``; ``default_spread=False`` drops the SERVICE default
        (the benchmark's ``--no-default-spread``), keeping a limit the spec asks for."""
        return per_node_limit(self.replicas, self.kind, self.max_replicas_per_node, default_spread)

    @property
    def is_service(self) -> bool:
        return self.kind == WorkloadKind.SERVICE

    def validate(self, scenario: Scenario | None = None, field_prefix: str = "") -> WorkloadSpec:
        """Check every rule of API.md; raises ValidationError with the field path."""
        for violation in self.violations(scenario, field_prefix):
            raise violation
        return self

    def violations(
        self, scenario: Scenario | None = None, field_prefix: str = ""
    ) -> Iterator[ValidationError]:
        """Every rule of API.md this spec breaks, in field order (at most one per field)."""
        p = f"{field_prefix}." if field_prefix else ""
        if not self.tenant:
            yield ValidationError(f"{p}tenant", "must not be empty")
        for name, value in (("tenant", self.tenant), ("name", self.name)):
            if len(value) > MAX_NAME:
                yield ValidationError(
                    f"{p}{name}", f"must be at most {MAX_NAME} characters (got {len(value)})"
                )
        yield from self.resources.request_violations(f"{p}resources")
        if not 0 <= self.replicas <= MAX_REPLICAS:
            yield ValidationError(
                f"{p}replicas", f"must be 0..{MAX_REPLICAS} (got {self.replicas})"
            )
        if not math.isfinite(self.max_latency_ms) or self.max_latency_ms < 0:
            yield ValidationError(
                f"{p}max_latency_ms", f"must be finite and >= 0 (got {self.max_latency_ms})"
            )
        if self.duration_s < 0:
            yield ValidationError(f"{p}duration_s", f"must be >= 0 (got {self.duration_s})")
        if self.kind not in WorkloadKind.__members__.values():
            yield ValidationError(f"{p}kind", f"unknown kind {self.kind}")
        if self.topology not in Topology.__members__.values():
            yield ValidationError(f"{p}topology", f"unknown topology {self.topology}")
        if self.topology == Topology.SPREAD:
            if not 2 <= self.min_sites <= self.replica_count:
                yield ValidationError(
                    f"{p}min_sites",
                    f"SPREAD needs 2 <= min_sites <= replicas (got min_sites={self.min_sites}, "
                    f"replicas={self.replica_count})",
                )
        elif self.min_sites < 0:
            yield ValidationError(f"{p}min_sites", f"must be >= 0 (got {self.min_sites})")
        if not 0 <= self.max_replicas_per_node <= MAX_REPLICAS:
            yield ValidationError(
                f"{p}max_replicas_per_node",
                f"must be 0..{MAX_REPLICAS}, 0 = no limit (got {self.max_replicas_per_node})",
            )
        yield from self._label_violations(p)
        for i, m in enumerate(self.gpu_models):
            if not m or len(m) > MAX_NAME:
                yield ValidationError(f"{p}gpu_models[{i}]", f"must be 1..{MAX_NAME} characters")
        if scenario is not None:
            yield from self._scenario_violations(scenario, p)

    def _label_violations(self, p: str) -> Iterator[ValidationError]:
        if len(self.labels) > MAX_LABELS:
            yield ValidationError(
                f"{p}labels", f"at most {MAX_LABELS} labels (got {len(self.labels)})"
            )
        for k, v in self.labels.items():
            if not k or len(k) > MAX_NAME:
                yield ValidationError(
                    f"{p}labels[{shorten(k, 40)!r}]", f"key must be 1..{MAX_NAME} characters"
                )
            elif len(v) > MAX_NAME:
                yield ValidationError(
                    f"{p}labels[{shorten(k, 40)!r}]", f"value must be at most {MAX_NAME} characters"
                )

    def _scenario_violations(self, scenario: Scenario, p: str) -> Iterator[ValidationError]:
        if self.origin and self.origin not in scenario.origins:
            yield ValidationError(
                f"{p}origin",
                f"unknown origin {shorten(self.origin)!r} (known: {', '.join(scenario.origins)})",
            )
        if self.max_latency_ms > 0 and not self.origin:
            yield ValidationError(f"{p}origin", "required when max_latency_ms is set")
        for i, s in enumerate(self.allowed_sites):
            if s not in scenario.site_names:
                yield ValidationError(
                    f"{p}allowed_sites[{i}]",
                    f"unknown site {shorten(s)!r} (known: {', '.join(scenario.site_names)})",
                )


@dataclass(frozen=True, slots=True)
class ReplicaPlacement:
    replica: int
    site: str
    node: str
    latency_ms: float = 0.0
    gpu_indices: tuple[int, ...] = ()  # physical GPUs of the node this replica holds
    start_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class Cost:
    """Per hour, for a whole workload or a site."""

    energy_cny_per_hour: float = 0.0
    carbon_kg_per_hour: float = 0.0
    power_watts: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.energy_cny_per_hour + other.energy_cny_per_hour,
            self.carbon_kg_per_hour + other.carbon_kg_per_hour,
            self.power_watts + other.power_watts,
        )


class ReasonCode(enum.StrEnum):
    """Why a workload, or one site for it, does not fit: the ``code`` of a ``Reason``.

    The values are the strings the API (``Reason.code``), the store (``reason_code``) and the
    metrics' ``reason`` label carry. ``permanent`` codes hold whatever the cluster's state (the
    spec rules the site or the node shape out); the others can change as capacity frees up.
    """

    SLO = "slo"  # no site within the SLO's RTT from the origin
    RESIDENCY = "residency"  # the site is not in allowed_sites
    GPU_MODEL = "gpu_model"  # no node with an allowed GPU model
    SIZE = "size"  # one replica is larger than every node (of a suitable kind)
    CAPACITY = "capacity"  # not enough free room now
    PRIORITY = "priority"  # the room went to higher-priority work
    GANG = "gang"  # not all replicas of a gang fit in one site
    SPREAD = "spread"  # not enough sites with room for a spread
    SPREAD_NODE = "spread_node"  # max_replicas_per_node (or the SERVICE default) rules it out
    ERROR = "error"  # the solver failed on this workload; it is retried

    @property
    def permanent(self) -> bool:
        """True when the reason never changes with capacity, only with the spec or scenario."""
        return self in _PERMANENT_CODES


_PERMANENT_CODES = frozenset(
    {ReasonCode.SLO, ReasonCode.RESIDENCY, ReasonCode.GPU_MODEL, ReasonCode.SIZE}
)


@dataclass(frozen=True, slots=True)
class Reason:
    """A machine-readable reason (``code``) and a message for people. A ``code`` given as its
    string is converted, so an unknown code fails here rather than in a metric or a client."""

    code: ReasonCode
    message: str
    site: str = ""
    resource: str = ""  # for capacity and size: cpu_millis, memory_mib, gpus, gpu_millis
    requested: float = 0.0
    largest_free: float = 0.0

    def __post_init__(self) -> None:
        if type(self.code) is not ReasonCode:
            object.__setattr__(self, "code", ReasonCode(self.code))


def primary_reason_code(reasons: Iterable[Reason], final: bool) -> ReasonCode:
    """The one code recorded for a workload that was not placed (store, metrics).

    A final verdict takes the first reason's code. A temporary one prefers the first reason that
    can change (capacity, priority, ...) over sites that never qualify: those say nothing about
    why it waits. Without reasons, ``capacity``."""
    codes = [r.code for r in reasons]
    if not final:
        for code in codes:
            if not code.permanent:
                return code
    return codes[0] if codes else ReasonCode.CAPACITY


@dataclass(frozen=True, slots=True)
class SiteVerdict:
    site: str
    feasible: bool
    reasons: tuple[Reason, ...] = ()
    cost: Cost = field(default_factory=Cost)


@dataclass(frozen=True, slots=True)
class Explanation:
    summary: str
    sites: tuple[SiteVerdict, ...] = ()


@dataclass(frozen=True, slots=True)
class Workload:
    id: str
    spec: WorkloadSpec
    state: WorkloadState = WorkloadState.PENDING
    placements: tuple[ReplicaPlacement, ...] = ()
    reason: str = ""
    created_at: datetime | None = None
    placed_at: datetime | None = None
    cost: Cost = field(default_factory=Cost)

    def starts_after(self, now: datetime | None) -> bool:
        """Whether it is a reservation that has not started at ``now`` (time shifting): placed
        to start later, it holds no node yet. False without a ``now``."""
        start = self.placements[0].start_time if self.placements else None
        return start is not None and now is not None and start > now
