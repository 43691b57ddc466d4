"""The loop's work queue: every PENDING workload it knows, and where each one is.

A workload is in exactly one place: *ready* (the next batch comes from here), *waiting* (tried,
did not fit: ready again once capacity is freed, so a full cluster costs nothing per cycle) or
*taken* (in a batch being solved or committed). Whatever takes a batch settles each of its
workloads: requeued, waiting, or removed once it is no longer PENDING; ``restore`` puts back
what a failed cycle left taken. A taken workload that comes back not fitting after capacity was
freed while it was taken is ready again, not waiting: it was solved on the capacity before,
and the freeing that would have woken it has passed.

Ready workloads are kept per tenant (a heap by priority, then arrival, each). A batch takes the
highest priority first; among tenants with work of that priority, the one served the fewest
replicas so far goes next (fair queuing: a tenant that becomes ready starts level with the least
served one, not at zero). One tenant's backlog therefore never holds up another tenant's work
for more than a batch, and a batch is bounded in replicas as well as in workloads.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable

from scheduler.domain import Workload

Entry = tuple[int, int, str]  # (-priority, arrival, id)


class WorkQueue:
    """See the module docstring. Only the loop thread uses it."""

    def __init__(self) -> None:
        self._pending: dict[str, Workload] = {}  # every PENDING workload, wherever it is
        self._ready: dict[str, list[Entry]] = {}  # per tenant with ready work: a heap
        self._served: dict[str, int] = {}  # replicas taken, per tenant with ready work
        self._arrivals = 0
        self._waiting: dict[str, Workload] = {}
        self._wakes = 0  # capacity freed so many times
        self._taken: dict[str, tuple[Workload, int]] = {}  # and ``_wakes`` when taken

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

    def take(self, limit: int, max_replicas: int | None = None) -> list[Workload]:
        """Up to ``limit`` ready workloads holding up to ``max_replicas`` replicas in all (at
        least one workload, however large): highest priority first, then the least served
        tenant's, each tenant's in arrival order."""
        batch: list[Workload] = []
        replicas = 0
        tenants: list[tuple[int, int, int, str]] = []  # (-priority, served, arrival, tenant)
        for tenant in list(self._ready):
            self._queue_tenant(tenants, tenant)
        while tenants and len(batch) < limit:
            if max_replicas is not None and batch and replicas >= max_replicas:
                break
            _, _, _, tenant = heapq.heappop(tenants)
            heap = self._ready[tenant]
            w = self._pending[heapq.heappop(heap)[2]]  # a live head: _queue_tenant saw to it
            self._taken[w.id] = (w, self._wakes)
            batch.append(w)
            replicas += w.spec.replica_count
            self._served[tenant] += w.spec.replica_count
            self._queue_tenant(tenants, tenant)
        return batch

    def requeue(self, batch: Iterable[Workload]) -> None:
        """Make taken (or waiting) workloads ready again, behind those of their priority."""
        for w in batch:
            if w.id in self._pending:
                self._taken.pop(w.id, None)
                self._waiting.pop(w.id, None)
                self._push(w)

    def wait(self, w: Workload) -> None:
        """``w`` (its latest copy) was tried and does not fit: ready again on ``wake`` - or
        at once, if capacity was freed while it was taken (module docstring)."""
        _, taken_at = self._taken.pop(w.id, (w, self._wakes))
        self._pending[w.id] = w
        if taken_at < self._wakes:
            self._waiting.pop(w.id, None)
            self._push(w)
            return
        self._waiting[w.id] = w

    def wake(self) -> None:
        """Capacity was freed: every waiting workload is ready again."""
        self._wakes += 1
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
        lost = [w for wid, (w, _) in self._taken.items() if wid not in keep]
        self.requeue(lost)
        return len(lost)

    def _live(self, entry: Entry) -> bool:
        wid = entry[2]
        # a workload queued twice counts once; one removed since is gone
        return wid in self._pending and wid not in self._waiting and wid not in self._taken

    def _queue_tenant(self, tenants: list[tuple[int, int, int, str]], tenant: str) -> None:
        """Drop the stale entries at the head of ``tenant``'s heap; queue the tenant for the
        batch by its head, or forget it when it has no ready work left."""
        heap = self._ready[tenant]
        while heap and not self._live(heap[0]):
            heapq.heappop(heap)
        if not heap:
            del self._ready[tenant]
            del self._served[tenant]
            return
        priority, arrival, _ = heap[0]
        heapq.heappush(tenants, (priority, self._served[tenant], arrival, tenant))

    def _push(self, w: Workload) -> None:
        tenant = w.spec.tenant
        heap = self._ready.get(tenant)
        if heap is None:
            # starts level with the least served tenant: waiting earned no credit
            heap = self._ready[tenant] = []
            self._served[tenant] = min(self._served.values(), default=0)
        heapq.heappush(heap, (-w.spec.priority, self._arrivals, w.id))
        self._arrivals += 1
