"""The seam every policy shares: ``Problem`` in, ``PlacementResult`` out, ``SolverParams``."""

from __future__ import annotations

import enum
import math
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
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
from scheduler.domain.forecast import Forecast
from scheduler.domain.timeline import Timeline
from scheduler.solver.fragmentation import RequestType

POLICIES = ("valley", "first-fit", "best-fit", "kube", "cheapest-first")


@dataclass(frozen=True, slots=True)
class PendingWorkload:
    id: str
    spec: WorkloadSpec


@dataclass(frozen=True)
class Problem:
    """One scheduling cycle: pending workloads, the cluster as it is now (not changed by
    ``solve``), and the local hour whose price and carbon apply.

    Time (all optional; without them every workload starts now, priced at ``hour``): ``now``,
    the cycle's instant; ``forecast``, price and carbon per site and hour ahead (the current
    hour's rates come from it too); ``timeline``, what every node holds in each hour ahead
    (reservations included), which lets deferrable work be placed to start later."""

    scenario: Scenario
    cluster: Cluster
    workloads: tuple[PendingWorkload, ...]
    hour: int = 12
    month: int = 1
    # the distribution of GPU requests to expect (FGD's target workload); when given, GPU work
    # is placed to leave the least fragmented GPU capacity for it
    gpu_target: tuple[RequestType, ...] = ()
    now: datetime | None = None
    forecast: Forecast | None = None
    timeline: Timeline | None = None
    # the priorities unplaced penalties rank against (empty: the workloads' own); a part of a
    # problem solved on its own keeps the whole problem's penalties with them
    priorities: tuple[int, ...] = ()


def without_room_on(
    cluster: Cluster, timeline: Timeline | None, names: Collection[str]
) -> tuple[Cluster, Timeline | None]:
    """Copies of ``cluster`` and ``timeline`` in which the named nodes (cordoned) take nothing
    new, now or reserved for later; what they hold stays."""
    if not names:
        return cluster, timeline
    closed = cluster.without_room_on(names)
    if timeline is not None:
        timeline = timeline.without_room_on([cluster.index[n] for n in names if n in cluster.index])
    return closed, timeline


# the repairs of Valley's packing, in the order they run by default (scheduler.solver.valley.repairs
# registers one class per name); a benchmark switches one off to measure what it is worth
REPAIRS = ("consolidate", "gpu-repack", "leftovers", "make-room", "displace", "fgd-refit")

# SolverParams fields that are numbers, with the least value each may take (None: no limit)
_NUMBER_FIELDS: dict[str, tuple[type, float | None, bool]] = {
    # name: (type, minimum, minimum allowed itself)
    "time_limit_s": (float, 0.0, False),
    "carbon_price_cny_per_tonne": (float, 0.0, True),
    "latency_cny_per_ms_hour": (float, 0.0, True),
    "headroom_target": (float, 0.0, False),
    "headroom_cny_per_core_hour": (float, 0.0, True),
    "unplaced_cny_per_replica_hour": (float, 0.0, False),
    "priority_factor": (float, 1.0, True),
    "rack_spread_cny_per_replica_hour": (float, 0.0, True),
    "num_workers": (int, 1.0, True),
}


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
    # whether the fgd-refit repair may wake a GPU node where that leaves less fragmented GPU
    # capacity. False: a powered node first (energy: a GPU node's idle power for the replica's
    # whole run); True: fragmentation alone, as FGD (a cluster filled to the last GPU, where
    # energy is not counted: the ``openb`` suite)
    fgd_wakes_nodes: bool = False
    # CP-SAT workers. One: its search is then the same for a seed whatever the machine (for
    # a given amount of search), the MIP bound's thread keeps the second core, and the rare
    # multi-worker aborts of OR-Tools 9.15 (CHECK failures in its parallel subsolvers: one in
    # a test run, one in an openb sweep on 2026-12-04) are less likely. Measured at 1k replicas,
    # seeds 0..5: the same gaps as with two (mean 0.238%).
    num_workers: int = 1
    # prove the bound with the wake and workload counts integer (a HiGHS MIP, a few tenths of
    # a second at 10k replicas, beside packing); False: the LP bound only, for callers that
    # solve often and need speed more than a tight gap (the loop under sustained load)
    mip_bound: bool = True
    # deferrable work (API.md "Time") may be placed to start at a cheaper or greener later hour
    # (policy valley, with a problem that has a timeline); False: everything starts now
    time_shifting: bool = True
    # the repairs of the packing, in order (names of REPAIRS); leave one out to measure it
    repairs: tuple[str, ...] = REPAIRS
    # per replica of a SERVICE that shares its rack with another replica of the same service
    # (a node outside every rack counts as a rack of its own): a soft preference for spreading
    # over racks, small beside energy (a node costs 0.2-0.6 CNY/h), so it decides where energy
    # is indifferent (which of the powered nodes, which node to wake)
    rack_spread_cny_per_replica_hour: float = 0.0001
    # a SERVICE with 2 or more replicas gets at most ceil(replicas / 2) per node unless its spec
    # sets max_replicas_per_node (API.md, "Availability"); False measures what that costs
    default_spread: bool = True
    solver_parameters: str = ""  # raw CP-SAT parameters in text format, passed through

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValidationError(
                "policy", f"unknown policy {self.policy!r} (one of {', '.join(POLICIES)})"
            )
        for name, (kind, least, inclusive) in _NUMBER_FIELDS.items():
            value = getattr(self, name)
            if value is None and name == "carbon_price_cny_per_tonne":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValidationError(name, f"must be a number (got {type(value).__name__})")
            if kind is int and not isinstance(value, int):
                raise ValidationError(name, f"must be a whole number (got {value})")
            if not math.isfinite(value):
                raise ValidationError(name, f"must be finite (got {value})")
            if least is not None and (value < least or (value == least and not inclusive)):
                sign = ">=" if inclusive else ">"
                raise ValidationError(name, f"must be {sign} {least:g} (got {value})")
        if self.headroom_target > 1:
            raise ValidationError(
                "headroom_target", f"must be in (0, 1] (got {self.headroom_target})"
            )
        for name in (
            "cpu_on_gpu_nodes",
            "fgd_wakes_nodes",
            "mip_bound",
            "time_shifting",
            "default_spread",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ValidationError(name, "must be true or false")
        if not isinstance(self.repairs, tuple):
            object.__setattr__(self, "repairs", tuple(self.repairs))
        for i, name in enumerate(self.repairs):
            if name not in REPAIRS:
                raise ValidationError(
                    f"repairs[{i}]",
                    f"unknown repair {str(name)[:40]!r} (one of {', '.join(REPAIRS)})",
                )
        if len(set(self.repairs)) != len(self.repairs):
            raise ValidationError("repairs", "names a repair twice")
        if not isinstance(self.solver_parameters, str):
            raise ValidationError("solver_parameters", "must be text")

    @classmethod
    def from_toml(cls, path: str | Path) -> SolverParams:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        return cls.from_mapping(data, str(path))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "params") -> SolverParams:
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                raise ValidationError(f"{source}: {key}", "unknown parameter")
            spec = _NUMBER_FIELDS.get(key)
            if spec is not None and spec[0] is float and type(value) is int:
                value = float(value)  # TOML writes 2 for 2.0
            kwargs[key] = value
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


@dataclass(frozen=True, slots=True)
class Breakdown:
    """The objective's terms of one placement, per hour."""

    energy_cny_per_hour: float = 0.0
    carbon_kg_per_hour: float = 0.0
    carbon_cny_per_hour: float = 0.0
    latency_cny_per_hour: float = 0.0
    headroom_cny_per_hour: float = 0.0
    unplaced_cny_per_hour: float = 0.0
    power_watts: float = 0.0
    rack_spread_cny_per_hour: float = 0.0

    @property
    def objective(self) -> float:
        return (
            self.energy_cny_per_hour
            + self.carbon_cny_per_hour
            + self.latency_cny_per_hour
            + self.headroom_cny_per_hour
            + self.unplaced_cny_per_hour
            + self.rack_spread_cny_per_hour
        )


@dataclass(frozen=True, slots=True)
class SolveStats:
    """Where a solve's time went and what its solvers said. Seconds are None for a phase that
    did not run; a status is the backend's own name (CP-SAT: OPTIMAL, FEASIBLE, INFEASIBLE,
    MODEL_INVALID, UNKNOWN; the linear solvers: OPTIMAL, FEASIBLE, INFEASIBLE, UNBOUNDED,
    ABNORMAL, MODEL_INVALID, NOT_SOLVED), '' where it did not run."""

    model_variables: int = 0
    model_constraints: int = 0
    model_classes: int = 0
    node_fit_cuts: int = 0  # rows added where pool totals overstate what fits on nodes
    build_seconds: float | None = None
    lp_seconds: float | None = None
    pack_seconds: float | None = None
    cpsat_seconds: float | None = None
    mip_seconds: float | None = None
    lp_status: str = ""
    mip_status: str = ""
    cpsat_status: str = ""
    cpsat_objective: float | None = None
    # the best integer decision of the aggregated model found (CNY/h): the packed first
    # answer's or CP-SAT's, whichever is lower; what splits the gap (PlacementResult.gap_parts)
    decision_objective: float | None = None
    cpsat_improved: bool = False
    fallback: bool = False
    # where the reported bound comes from: "lp", "mip" or "cpsat" ('' without one)
    bound_source: str = ""
    # the repairs that changed the placement, in the order they ran (both packings)
    repairs_applied: tuple[str, ...] = ()
    # repairs that raised (a bug): rolled back and logged, the solve went on without them
    repairs_failed: tuple[str, ...] = ()
    # workloads placed to start at a later hour (time shifting)
    deferred_workloads: int = 0

    def backend_statuses(self) -> tuple[tuple[str, str], ...]:
        """(backend, status) of every solver that ran: what a metric counts."""
        named = (("lp", self.lp_status), ("mip", self.mip_status), ("cpsat", self.cpsat_status))
        return tuple((b, s) for b, s in named if s)


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
    breakdown: Breakdown = field(default_factory=Breakdown)  # the objective's terms
    stats: SolveStats = field(default_factory=SolveStats)

    @property
    def gap(self) -> float | None:
        if self.bound is None:
            return None
        if self.objective <= 1e-12:
            return 0.0
        # negative only if the bound were wrong: shown, not hidden
        return (self.objective - self.bound) / abs(self.objective)

    def gap_parts(self) -> tuple[float, float] | None:
        """The gap in two parts, as shares of the objective: (bound side, packing side). The
        bound side is how far the best decision of the aggregated model known lies above the
        bound: a weak bound, or a search that stopped before it found better (the packed first
        answer counts as a decision, so when the search finds nothing better, the whole gap is
        here). The packing side is what putting the best decision onto concrete nodes cost
        above its model value. None without a bound or a model decision."""
        decision = self.stats.decision_objective
        if self.bound is None or decision is None or self.objective <= 1e-12:
            return None
        scale = abs(self.objective)
        return (decision - self.bound) / scale, (self.objective - decision) / scale

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
