"""Moves of running replicas (a drain, a rebalance): what moves where, what stays and why."""

from __future__ import annotations

from dataclasses import dataclass, field

from scheduler.domain.workload import Cost, ReplicaPlacement


@dataclass(frozen=True)
class Move:
    workload_id: str
    replica: int
    from_node: str
    to_node: str


@dataclass(frozen=True)
class Stuck:
    workload_id: str
    replica: int
    node: str
    reason: str


@dataclass
class DrainPlan:
    """What draining would do: the moves, what stays and why, each moved workload's new
    placements and hourly cost, and the whole cluster's hourly cost before and after."""

    moves: list[Move] = field(default_factory=list)
    stuck: list[Stuck] = field(default_factory=list)
    placements: dict[str, tuple[tuple[ReplicaPlacement, ...], Cost]] = field(default_factory=dict)
    cost_before: Cost = field(default_factory=Cost)
    cost_after: Cost = field(default_factory=Cost)
    carbon_cny_per_kg: float = 0.0  # the objective's carbon price
    # CNY per hour no placement of the running work can beat (``objective``'s unit); None where
    # no bound was proven (a rebalance proves one; a drain does not)
    objective_bound: float | None = None

    def objective(self, cost: Cost) -> float:
        """CNY per hour: energy plus carbon at the objective's carbon price."""
        return cost.energy_cny_per_hour + cost.carbon_kg_per_hour * self.carbon_cny_per_kg

    @property
    def gap(self) -> float | None:
        """How far the cluster after the plan lies above ``objective_bound``, as a share of it
        (None without a bound)."""
        after = self.objective(self.cost_after)
        if self.objective_bound is None or after <= 0:
            return None
        return (after - self.objective_bound) / after
