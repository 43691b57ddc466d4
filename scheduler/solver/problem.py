"""The seam every policy shares: ``Problem`` in, ``PlacementResult`` out, ``SolverParams``."""

from __future__ import annotations

import enum
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from scheduler.domain import (
    Cluster,
    Cost,
    Reason,
    ReplicaPlacement,
    Scenario,
    ValidationError,
    WorkloadSpec,
)
from scheduler.solver.fragmentation import RequestType

POLICIES = ("valley", "first-fit", "best-fit", "kube", "cheapest-first")


@dataclass(frozen=True, slots=True)
class PendingWorkload:
    id: str
    spec: WorkloadSpec


@dataclass(frozen=True)
class Problem:
    """One scheduling cycle: pending workloads, the cluster as it is now (not changed by
    ``solve``), and the local hour whose price and carbon apply."""

    scenario: Scenario
    cluster: Cluster
    workloads: tuple[PendingWorkload, ...]
    hour: int = 12
    month: int = 1
    # the distribution of GPU requests to expect (FGD's target workload); when given, GPU work
    # is placed to leave the least fragmented GPU capacity for it
    gpu_target: tuple[RequestType, ...] = ()


@dataclass(frozen=True)
class SolverParams:
    """Policy weights and limits, all money in CNY per hour. Validated on construction."""

    policy: str = "valley"
    time_limit_s: float = 1.0
    # carbon price for the objective; None = the scenario's
    carbon_price_cny_per_tonne: float | None = None
    # per replica of a service, per ms of RTT from its origin: small, it breaks near-ties only
    latency_cny_per_ms_hour: float = 0.0001
    # penalty per core-hour allocated above the target share of a site's CPU capacity
    headroom_target: float = 0.85
    headroom_cny_per_core_hour: float = 0.02
    # penalty for leaving one replica unplaced; multiplied by priority_factor per priority rank,
    # so placing more always wins and a higher priority wins the capacity
    unplaced_cny_per_replica_hour: float = 100.0
    priority_factor: float = 4.0
    # whether CPU-only work may use GPU nodes (kept for GPU work by default)
    cpu_on_gpu_nodes: bool = False
    num_workers: int = 2
    # prove the bound with the wake counts integer (a small HiGHS MIP, tens of ms at 10k
    # replicas); False: the LP bound only, for callers that solve often and need speed more
    # than a tight gap (the loop under sustained load)
    mip_bound: bool = True
    solver_parameters: str = ""  # raw CP-SAT parameters in text format, passed through

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValidationError(
                "policy", f"unknown policy {self.policy!r} (one of {', '.join(POLICIES)})"
            )
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and (not math.isfinite(value) or value < 0):
                raise ValidationError(f.name, f"must be finite and >= 0 (got {value})")
        if self.time_limit_s <= 0:
            raise ValidationError("time_limit_s", "must be > 0")
        if not 0 < self.headroom_target <= 1:
            raise ValidationError("headroom_target", "must be in (0, 1]")
        if self.priority_factor < 1:
            raise ValidationError("priority_factor", "must be >= 1")
        if self.num_workers < 1:
            raise ValidationError("num_workers", "must be >= 1")

    @classmethod
    def from_toml(cls, path: str | Path) -> SolverParams:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        return cls.from_mapping(data, str(path))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "params") -> SolverParams:
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                raise ValidationError(f"{source}: {key}", "unknown parameter")
            kwargs[key] = (
                float(value) if isinstance(value, int) and known[key].type == "float" else value
            )
        try:
            return cls(**kwargs)
        except ValidationError as e:
            raise ValidationError(f"{source}: {e.field}", e.message) from None


class SolveStatus(enum.Enum):
    OPTIMAL = "optimal"  # proven optimal for the aggregated model
    FEASIBLE = "feasible"  # time limit hit, best solution kept
    FALLBACK = "fallback"  # the solver found nothing in time: greedy answer
    HEURISTIC = "heuristic"  # a peer policy, no optimality claim
    EMPTY = "empty"  # nothing to place


@dataclass(frozen=True, slots=True)
class Unplaced:
    """A workload left unplaced, with reasons. ``final`` means it can never fit as specified
    (UNSCHEDULABLE); otherwise it stays PENDING and is retried when capacity changes."""

    workload_id: str
    final: bool
    summary: str
    reasons: tuple[Reason, ...] = ()


@dataclass(frozen=True)
class PlacementResult:
    policy: str
    status: SolveStatus
    placements: Mapping[str, tuple[ReplicaPlacement, ...]]
    unplaced: Mapping[str, Unplaced]
    costs: Mapping[str, Cost]  # per placed workload, per hour
    objective: float  # CNY/h: energy + carbon + latency + headroom + unplaced penalty
    bound: float | None = None  # a proven lower bound on ``objective``
    solve_seconds: float = 0.0
    stats: Mapping[str, float] = field(default_factory=dict)

    @property
    def gap(self) -> float | None:
        if self.bound is None:
            return None
        if self.objective <= 1e-12:
            return 0.0
        # negative only if the bound were wrong: shown, not hidden
        return (self.objective - self.bound) / abs(self.objective)

    def is_feasible(self) -> bool:
        return self.status is not SolveStatus.FALLBACK or bool(self.placements)

    @property
    def placed_replicas(self) -> int:
        return sum(len(p) for p in self.placements.values())

    def summary(self) -> str:
        gap = "n/a" if self.gap is None else f"{self.gap:.3%}"
        return (
            f"{self.policy}: {self.status.value}, {len(self.placements)} placed "
            f"({self.placed_replicas} replicas), {len(self.unplaced)} unplaced, "
            f"objective {self.objective:.4f} CNY/h, gap {gap}, {self.solve_seconds:.3f} s"
        )
