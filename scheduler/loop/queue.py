"""The loop's work queue: every PENDING workload it knows, and where each one is.

A workload is in exactly one place: *ready* (a heap by priority, then arrival: the next batch
comes from here), *waiting* (tried, did not fit: ready again once capacity is freed, so a full
cluster costs nothing per cycle) or *taken* (in a batch being solved or committed). Whatever
takes a batch settles each of its workloads: requeued, waiting, or removed once it is no longer
PENDING; ``restore`` puts back what a failed cycle left taken.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable

from scheduler.domain import Workload


class WorkQueue:
    """See the module docstring. Only the loop thread uses it."""

    def __init__(self) -> None:
        self._pending: dict[str, Workload] = {}  # every PENDING workload, wherever it is
        self._ready: list[tuple[int, int, str]] = []  # heap of (-priority, arrival, id)
        self._arrivals = 0
        self._waiting: dict[str, Workload] = {}
        self._taken: dict[str, Workload] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, workload_id: object) -> bool:
        return workload_id in self._pending

    @property
    def has_ready(self) -> bool:
        """Whether a batch could be taken now (stale heap entries count: taking drops them)."""
        return bool(self._ready)

    def add(self, w: Workload) -> bool:
        """A new PENDING workload, ready; False if it is known already."""
        if w.id in self._pending:
            return False
        self._pending[w.id] = w
        self._push(w)
        return True

    def take(self, limit: int) -> list[Workload]:
        """Up to ``limit`` ready workloads, highest priority first, then in arrival order."""
        batch: list[Workload] = []
        while self._ready and len(batch) < limit:
            _, _, wid = heapq.heappop(self._ready)
            w = self._pending.get(wid)
            # a workload queued twice counts once; one removed since is gone
            if w is not None and wid not in self._waiting and wid not in self._taken:
                self._taken[wid] = w
                batch.append(w)
        return batch

    def requeue(self, batch: Iterable[Workload]) -> None:
        """Make taken (or waiting) workloads ready again, behind those of their priority."""
        for w in batch:
            if w.id in self._pending:
                self._taken.pop(w.id, None)
                self._waiting.pop(w.id, None)
                self._push(w)

    def wait(self, w: Workload) -> None:
        """``w`` (its latest copy) was tried and does not fit: ready again on ``wake``."""
        self._taken.pop(w.id, None)
        self._pending[w.id] = w
        self._waiting[w.id] = w

    def wake(self) -> None:
        """Capacity was freed: every waiting workload is ready again."""
        waiting, self._waiting = self._waiting, {}
        for w in waiting.values():
            self._push(w)

    def remove(self, workload_id: str) -> None:
        """``workload_id`` is no longer PENDING (placed, unschedulable, cancelled)."""
        self._pending.pop(workload_id, None)
        self._waiting.pop(workload_id, None)
        self._taken.pop(workload_id, None)

    def restore(self, keep: Collection[str] = ()) -> int:
        """After a failed cycle: make every taken workload ready again, except those in
        ``keep`` (a batch the solver process still has); returns how many."""
        lost = [w for wid, w in self._taken.items() if wid not in keep]
        self.requeue(lost)
        return len(lost)

    def _push(self, w: Workload) -> None:
        heapq.heappush(self._ready, (-w.spec.priority, self._arrivals, w.id))
        self._arrivals += 1
