"""The capacity PLACED workloads hold, as the loop keeps it: the cluster, which workload holds
what, and when each one with a duration completes.

A workload's capacity is taken and given back with its record, never one without the other, so
the cluster is always the sum of what the holders hold.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable, Sequence

from scheduler.domain import CapacityError, Cluster, Scenario, Workload
from scheduler.loop.apply import allocate_replicas, release_replicas

log = logging.getLogger(__name__)


class Allocation:
    """See the module docstring. Only the loop thread uses it; ``cluster`` is changed in place
    (publish a copy to other threads)."""

    def __init__(self, scenario: Scenario) -> None:
        self.cluster = Cluster(scenario)
        self._holders: dict[str, Workload] = {}  # PLACED, holding capacity in ``cluster``
        self._completions: list[tuple[float, str]] = []  # heap of (due epoch seconds, id)

    def __len__(self) -> int:
        return len(self._holders)

    def restore(self, w: Workload) -> bool:
        """Take the capacity of a stored PLACED workload again (on start), every replica or
        none; False (nothing taken) if its placements no longer fit the scenario."""
        try:
            allocate_replicas(self.cluster, w.spec.resources, w.placements)
        except (CapacityError, KeyError) as e:
            # the scenario changed under a stored placement: the record is kept, and says so
            log.error("cannot restore placement of %s: %s", w.id, e)
            return False
        self._hold(w)
        return True

    def adopt(self, cluster: Cluster, placed: Iterable[Workload]) -> None:
        """``cluster`` (a copy of ``self.cluster`` with the capacity of ``placed`` taken, and
        nothing else changed) becomes the cluster, and ``placed`` its holders: a committed
        cycle's placements."""
        self.cluster = cluster
        for w in placed:
            self._hold(w)

    def release(self, workload_id: str) -> bool:
        """Give back what ``workload_id`` holds (cancelled or completed); False if nothing."""
        w = self._holders.pop(workload_id, None)
        if w is None:
            return False
        release_replicas(self.cluster, w, w.placements)
        return True

    def next_due(self) -> float | None:
        """When the next holder completes (epoch seconds), if any has a duration."""
        while self._completions and self._completions[0][1] not in self._holders:
            heapq.heappop(self._completions)  # released meanwhile
        return self._completions[0][0] if self._completions else None

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

    def _hold(self, w: Workload) -> None:
        self._holders[w.id] = w
        self._schedule(w)

    def _schedule(self, w: Workload) -> None:
        if w.spec.duration_s > 0 and w.placed_at is not None:
            heapq.heappush(self._completions, (w.placed_at.timestamp() + w.spec.duration_s, w.id))
