"""What the servicers need from the scheduling loop, as a protocol, so that the service layer
does not import the loop (they are independent layers; the composition root wires them)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from scheduler.domain import Cluster, DrainPlan, Forecast, Scenario, Workload, WorkloadState
from scheduler.domain.timeline import Timeline
from scheduler.solver import SolverParams


class ClusterView(Protocol):
    """A consistent copy of the cluster and the scenario's local time (the loop's Snapshot)."""

    @property
    def cluster(self) -> Cluster: ...

    @property
    def scenario(self) -> Scenario: ...

    @property
    def hour(self) -> int: ...

    @property
    def month(self) -> int: ...

    # where a loop runs here, what planning in time needs (else None: everything starts now)
    @property
    def now(self) -> datetime | None: ...

    @property
    def forecast(self) -> Forecast | None: ...

    @property
    def timeline(self) -> Timeline | None: ...


class Scheduling(Protocol):
    """The scheduling loop as the servicers see it; every method returns at once."""

    @property
    def params(self) -> SolverParams: ...

    def submitted(self, workloads: Sequence[Workload]) -> None:
        """New PENDING workloads, committed: queue them for placement."""
        ...

    def state_changed(self, workload: Workload, old: WorkloadState) -> None:
        """A committed change made outside the loop (a cancel): free what it held."""
        ...

    def drain(self, nodes: Sequence[str], dry_run: bool, timeout: float) -> DrainPlan:
        """Move the running replicas off ``nodes`` (the loop's thread does it); the plan, or
        with ``dry_run`` the plan only. ``NotLeaderError`` where no loop runs here."""
        ...

    def rebalance(
        self, dry_run: bool, max_moves: int, sites: Sequence[str], timeout: float
    ) -> DrainPlan:
        """Move running replicas so that powered nodes can power down, and from dearer sites to
        cheaper ones, where that lowers the objective; ``NotLeaderError`` where no loop runs
        here."""
        ...

    def capacity_changed(self) -> None:
        """Capacity came back outside the loop (nodes uncordoned): retry what waits."""
        ...

    def snapshot(self) -> ClusterView: ...
