"""The capacity PLACED workloads hold, as the loop keeps it: the cluster (what is held now), the
timeline (what is held in each hour ahead, reservations included), which workload holds what,
when each reservation starts and when each one with a duration completes.

A workload's capacity is taken and given back with its record, never one without the other, so
the cluster is always the sum of what the started holders hold, and the timeline of what every
holder holds. A reservation (a placement whose start is later) holds only the timeline until it
starts (``start_due``); it completes at its start plus its duration.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from scheduler.domain import (
    GPU_MILLIS,
    CapacityError,
    Cluster,
    Cost,
    ReplicaPlacement,
    Scenario,
    Workload,
    WorkloadSpec,
)
from scheduler.domain.forecast import hour_of
from scheduler.domain.timeline import DEFAULT_HORIZON_HOURS, Timeline, hours_covering
from scheduler.loop.apply import allocate_replicas, release_replicas, starts_later

log = logging.getLogger(__name__)


def start_of(w: Workload) -> datetime | None:
    """When a PLACED workload starts (or started): its placements' start, else when placed."""
    if w.placements and w.placements[0].start_time is not None:
        return w.placements[0].start_time
    return w.placed_at


def hold_in_time(
    timeline: Timeline,
    cluster: Cluster,
    wid: str,
    spec: WorkloadSpec,
    placements: Sequence[ReplicaPlacement],
    start_s: float,
    reserved: bool,
) -> None:
    """Hold a workload's placements in ``timeline`` from ``start_s`` for its duration (its
    replicas' GPUs too)."""
    first, end = hours_covering(start_s, spec.duration_s)
    known = [p for p in placements if p.node in cluster.index]
    nodes = [cluster.index[p.node] for p in known]
    r = spec.resources
    share = GPU_MILLIS if r.gpus else r.gpu_millis
    gpus = [p.gpu_indices for p in known]
    timeline.hold(
        wid, nodes, r.cpu_millis, r.memory_mib, first, end, reserved, gpus=gpus, gpu_share=share
    )


def hold_placed(
    timeline: Timeline,
    cluster: Cluster,
    batch: Sequence[Workload],
    placed: Mapping[str, tuple[tuple[ReplicaPlacement, ...], Cost]],
    now: datetime,
) -> None:
    """Hold a cycle's placements of ``batch`` in ``timeline``: from ``now``, or from their
    start for those that start later."""
    specs = {w.id: w.spec for w in batch}
    for wid, (reps, _) in placed.items():
        later = starts_later(reps)
        start = reps[0].start_time if later and reps[0].start_time else now
        hold_in_time(timeline, cluster, wid, specs[wid], reps, start.timestamp(), later)


class Allocation:
    """See the module docstring. Only the loop thread uses it; ``cluster`` and ``timeline``
    are changed in place (publish copies to other threads)."""

    def __init__(self, scenario: Scenario, horizon_hours: int = DEFAULT_HORIZON_HOURS) -> None:
        self.cluster = Cluster(scenario)
        self.timeline = Timeline(self.cluster, 0, horizon_hours)
        self._holders: dict[str, Workload] = {}  # PLACED, holding capacity
        self._waiting: dict[str, float] = {}  # reservations not started: id -> start (epoch s)
        self._completions: list[tuple[float, str]] = []  # heap of (due epoch seconds, id)
        self._starts: list[tuple[float, str]] = []  # heap of (start epoch seconds, id)
        # when each holder with a duration completes: heap entries that disagree are stale
        self._due: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._holders)

    def advance(self, now: datetime) -> None:
        """Make the timeline begin at the hour of ``now``."""
        self.timeline.advance(hour_of(now))

    def restore(self, w: Workload, now: datetime | None = None) -> bool:
        """Take the capacity of a stored PLACED workload again (on start), every replica or
        none; False (nothing taken) if its placements no longer fit the scenario. One that
        starts after ``now`` holds the timeline only."""
        start = start_of(w)
        if now is not None and start is not None and start > now:
            self._reserve(w, start.timestamp())
            return True
        try:
            allocate_replicas(self.cluster, w.spec.resources, w.placements)
        except (CapacityError, KeyError) as e:
            # the scenario changed under a stored placement: the record is kept, and says so
            log.error("cannot restore placement of %s: %s", w.id, e)
            return False
        self._hold_running(w)
        return True

    def adopt(
        self, cluster: Cluster, placed: Iterable[Workload], timeline: Timeline | None = None
    ) -> None:
        """``cluster`` and ``timeline`` (copies of this allocation's with the capacity of
        ``placed`` taken, and nothing else changed) become this allocation's, and ``placed``
        its holders: a committed cycle's placements. Without ``timeline``, ``placed`` started
        when placed and are held in this allocation's."""
        self.cluster = cluster
        if timeline is None:
            for w in placed:
                self._hold_running(w)
            return
        self.timeline = timeline
        for w in placed:
            start = start_of(w)
            hold = timeline.holds.get(w.id)
            if hold is not None and hold.reserved and start is not None:
                self._waiting[w.id] = start.timestamp()
                heapq.heappush(self._starts, (start.timestamp(), w.id))
            self._holders[w.id] = w
            self._schedule(w)

    def release(self, workload_id: str) -> bool:
        """Give back what ``workload_id`` holds (cancelled or completed); False if nothing."""
        w = self._holders.pop(workload_id, None)
        if w is None:
            return False
        self._due.pop(workload_id, None)
        if self._waiting.pop(workload_id, None) is None:
            release_replicas(self.cluster, w, w.placements)
        self.timeline.release(workload_id)
        return True

    def start_due(self, now: datetime) -> list[Workload]:
        """Reservations whose start has come take their capacity now."""
        t = now.timestamp()
        out = []
        while self._starts and self._starts[0][0] <= t:
            start, wid = heapq.heappop(self._starts)
            if self._waiting.get(wid) != start:
                continue  # released or planned again meanwhile
            del self._waiting[wid]
            w = self._holders[wid]
            try:
                allocate_replicas(self.cluster, w.spec.resources, w.placements)
            except (CapacityError, KeyError) as e:
                # the timeline kept its room, so only a bug gets here: it runs unaccounted
                log.error("reserved capacity of %s is not free at its start: %s", wid, e)
                self._holders.pop(wid)
                self._due.pop(wid, None)  # its completion is no one's now
                self.timeline.release(wid)
                continue
            self.timeline.started(wid)
            out.append(w)
        return out

    def replace(self, w: Workload) -> None:
        """``w`` (a holder whose reservation was planned again) holds its new placements."""
        self.release(w.id)
        start = start_of(w)
        assert start is not None
        self._reserve(w, start.timestamp())

    def reservations(self) -> list[Workload]:
        """The holders that have not started, soonest start first."""
        return sorted(
            (self._holders[wid] for wid in self._waiting), key=lambda w: self._waiting[w.id]
        )

    def is_reserved(self, workload_id: str) -> bool:
        return workload_id in self._waiting

    def holder(self, workload_id: str) -> Workload:
        return self._holders[workload_id]

    def holders(self) -> list[Workload]:
        """Every PLACED workload this allocation holds (reservations included)."""
        return list(self._holders.values())

    def moved(self, moved: Sequence[Workload]) -> None:
        """``moved`` (running holders whose replicas moved: one plan's moves) hold their new
        placements. Every old placement is given back before any new one is taken, as the plan
        was made: one workload at a time, a replica could land on room another had not left
        yet, and the workload would not be held at all (it would run unaccounted)."""
        for w in moved:
            self.release(w.id)
        for w in moved:
            self.restore(w)

    def next_due(self) -> float | None:
        """When the next holder completes (epoch seconds), if any has a duration."""
        while (
            self._completions and self._due.get(self._completions[0][1]) != self._completions[0][0]
        ):
            heapq.heappop(self._completions)  # released or planned again meanwhile
        return self._completions[0][0] if self._completions else None

    def next_start(self) -> float | None:
        """When the next reservation starts (epoch seconds), if any."""
        while self._starts and self._waiting.get(self._starts[0][1]) != self._starts[0][0]:
            heapq.heappop(self._starts)  # released or planned again meanwhile
        return self._starts[0][0] if self._starts else None

    def pop_due(self, now: float) -> list[Workload]:
        """The holders due to complete by ``now`` (epoch seconds), taken off the schedule: the
        caller releases them once the store has them COMPLETED, or ``reschedule``s them."""
        due: list[Workload] = []
        while (d := self.next_due()) is not None and d <= now:
            _, wid = heapq.heappop(self._completions)
            due.append(self._holders[wid])
        return due

    def reschedule(self, due: Sequence[Workload]) -> None:
        """Put back on the schedule what ``pop_due`` took (their completion was not stored)."""
        for w in due:
            self._schedule(w)

    def _hold_running(self, w: Workload) -> None:
        start = start_of(w)
        t = start.timestamp() if start is not None else 0.0
        hold_in_time(self.timeline, self.cluster, w.id, w.spec, w.placements, t, False)
        self._holders[w.id] = w
        self._schedule(w)

    def _reserve(self, w: Workload, start_s: float) -> None:
        hold_in_time(self.timeline, self.cluster, w.id, w.spec, w.placements, start_s, True)
        self._holders[w.id] = w
        self._waiting[w.id] = start_s
        heapq.heappush(self._starts, (start_s, w.id))
        self._schedule(w)

    def _schedule(self, w: Workload) -> None:
        start = start_of(w)
        if w.spec.duration_s > 0 and start is not None:
            due = start.timestamp() + w.spec.duration_s
            self._due[w.id] = due
            heapq.heappush(self._completions, (due, w.id))
