"""What the scheduling loop tells and shows: a ``CycleReport`` per cycle to its
``LoopObserver``s, and a ``Snapshot`` to whoever reads the cluster (metrics, RPCs)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import numpy as np
import numpy.typing as npt

from scheduler.domain import Cluster, Forecast, Scenario, Workload, WorkloadState
from scheduler.domain.timeline import Timeline
from scheduler.solver import PlacementResult


@dataclass(frozen=True)
class CycleReport:
    """One per cycle that solved something."""

    started_at: datetime
    cycle_seconds: float
    solve_seconds: float
    batch_workloads: int
    batch_replicas: int
    result: PlacementResult
    placed: tuple[Workload, ...]  # became PLACED this cycle (created_at, placed_at set)
    unschedulable: tuple[Workload, ...]  # became UNSCHEDULABLE this cycle
    pending: tuple[Workload, ...]  # tried, still PENDING with a reason


class LoopObserver(Protocol):
    """Told about everything the loop sees; called from RPC threads (``on_submitted``, cancels)
    and the loop thread, so implementations must be thread-safe and quick."""

    def on_submitted(self, workloads: Sequence[Workload]) -> None: ...

    def on_cycle(self, report: CycleReport) -> None: ...

    def on_state_change(self, workload: Workload, old: WorkloadState) -> None: ...

    # optional: ``on_moved(before, after, at)`` for each workload whose running replicas moved
    # (a drain, a rebalance), the workload before and after, at the loop's clock;
    # ``on_preempted(preemptor, victims, at)`` for each workload placed by preemption (PLACED
    # now), with the workloads it displaced as they ran before, at the loop's clock


@dataclass(frozen=True)
class Snapshot:
    """Read at scrape time and by RPCs that show the cluster; cheap to take."""

    counts_by_state: Mapping[WorkloadState, int]
    pending_by_reason: Mapping[str, int]  # Reason.code -> PENDING workloads with that code
    unschedulable_by_reason: Mapping[str, int]
    cluster: Cluster  # a copy of the current allocation
    scenario: Scenario
    hour: int
    month: int
    last_result: PlacementResult | None
    # cores reserved by work that has not started, per site (scenario order) and hour ahead,
    # from the hour that begins at ``reserved_from``
    reserved_cores: npt.NDArray[np.float64] | None = None
    reserved_from: datetime | None = None
    # what a dry run needs to plan in time as a cycle would (None where no loop runs here):
    # the instant, the forecast, and a copy of what every node holds in each hour ahead
    now: datetime | None = None
    forecast: Forecast | None = None
    timeline: Timeline | None = None
