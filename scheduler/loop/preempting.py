"""Preemption in the loop: after a batch leaves higher-priority work PENDING for want of room,
``Preempter`` asks the planner (``solver.preemption``) which lower-priority running workloads
to displace, commits the plan through the store (``Store.preempt``: one transaction) and makes
the allocation and the queue follow it: the victims' capacity is released and they are queued
again (the ordinary solver places them when there is room), the preemptors hold theirs.

No cascades, no loops (the history of the last hour is the store's, read again on start):

- a workload preempted twice within ``WINDOW_S`` (an hour) is not preempted again until the
  older of those two has left the window: it is never displaced over and over;
- a workload preempted within the window does not preempt others itself: it waits for room
  like any other, so one submission displaces one round of work, never a chain of it;
- equal priorities never preempt (the planner displaces strictly lower priorities only), so
  no two workloads can displace each other in turn.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from scheduler.domain import ReasonCode, Workload
from scheduler.loop.allocation import Allocation
from scheduler.loop.queue import WorkQueue
from scheduler.solver import PendingWorkload, Problem, SolverParams
from scheduler.solver.preemption import plan_preemptions
from scheduler.store import Displacement, PreemptionRecord, Store, Unfit

log = logging.getLogger(__name__)

WINDOW_S = 3600.0  # the no-loop rule's window
MAX_PER_WINDOW = 2  # preemptions of one workload within the window, at most

# why a PENDING workload may be waiting for room that preemption can make: not a permanent
# reason (SLO, residency, GPU model, size), nor a solver failure
_ROOM_CODES = frozenset(
    c.value for c in ReasonCode if not c.permanent and c is not ReasonCode.ERROR
)


@dataclass(frozen=True)
class Preempted:
    """What one cycle's preemptions committed, for the loop's counters and observers: each
    placed preemptor with the victims (as they ran, before) it displaced, and the victims as
    they are now (PENDING)."""

    placed: tuple[tuple[Workload, tuple[Workload, ...]], ...]
    victims: tuple[Workload, ...]


class PreemptionHistory:
    """The preemptions of the last ``WINDOW_S`` (the no-loop rules), oldest first."""

    def __init__(self) -> None:
        self._records: deque[tuple[datetime, str]] = deque()  # (when, displaced id)
        self._count: Counter[str] = Counter()

    def load(self, records: Iterable[PreemptionRecord]) -> None:
        self._records.clear()
        self._count.clear()
        for r in sorted(records, key=lambda r: r.time):
            self.add(r.workload_id, r.time)

    def add(self, workload_id: str, at: datetime) -> None:
        self._records.append((at, workload_id))
        self._count[workload_id] += 1

    def expire(self, now: datetime) -> bool:
        """Forget what has left the window by ``now``; True if anything did (a workload may be
        displaced again, or preempt again: what waits is worth another try)."""
        since = now - timedelta(seconds=WINDOW_S)
        gone = False
        while self._records and self._records[0][0] <= since:
            _, wid = self._records.popleft()
            self._count[wid] -= 1
            if not self._count[wid]:
                del self._count[wid]
            gone = True
        return gone

    def next_expiry(self) -> float | None:
        """When the oldest preemption leaves the window (epoch seconds), if any."""
        return self._records[0][0].timestamp() + WINDOW_S if self._records else None

    def protected(self, now: datetime) -> set[str]:
        """Those preempted ``MAX_PER_WINDOW`` times within the window: not to be displaced."""
        self.expire(now)
        return {wid for wid, n in self._count.items() if n >= MAX_PER_WINDOW}

    def recently_preempted(self, now: datetime) -> set[str]:
        """Those preempted within the window: they do not preempt others."""
        self.expire(now)
        return set(self._count)


class Preempter:
    """See the module docstring. Only the loop thread uses it."""

    def __init__(self, store: Store, per_cycle: int, budget_s: float) -> None:
        self._store = store
        self._per_cycle = per_cycle
        self._budget_s = budget_s
        self.history = PreemptionHistory()

    def load(self, now: datetime) -> None:
        """Read the last window's preemptions from the store (on start)."""
        self.history.load(self._store.preemptions_since(now - timedelta(seconds=WINDOW_S)))

    def stranded(
        self,
        pending: Sequence[Workload],
        why: Mapping[str, Unfit],
        holders: Sequence[Workload],
        now: datetime,
    ) -> list[Workload]:
        """Of a batch's ``pending`` workloads (``why``: their reasons), those that may preempt:
        waiting for room, of a priority above some running workload's, not preempted lately;
        the highest priority first, at most ``per_cycle``."""
        if not pending or not holders:
            return []
        lowest = min(w.spec.priority for w in holders)
        recent = self.history.recently_preempted(now)
        out = [
            w
            for w in pending
            if w.spec.priority > lowest
            and w.id not in recent
            and (u := why.get(w.id)) is not None
            and u.code in _ROOM_CODES
        ]
        out.sort(key=lambda w: -w.spec.priority)
        return out[: self._per_cycle]

    def preempt(
        self,
        stranded: Sequence[Workload],
        problem: Problem,
        params: SolverParams,
        allocation: Allocation,
        queue: WorkQueue,
        cordoned: Collection[str],
        now: datetime,
    ) -> Preempted | None:
        """Plan and commit preemptions for ``stranded`` on ``problem`` (the allocation's
        cluster, now); then ``allocation`` and ``queue`` follow what the store has. None if
        nothing was committed. ``StoreError`` leaves everything as it was."""
        holders = allocation.holders()
        plans = plan_preemptions(
            problem,
            params,
            [PendingWorkload(w.id, w.spec) for w in stranded],
            holders,
            self.history.protected(now),
            cordoned,
            self._budget_s,
        )
        if not plans:
            return None
        by_id = {w.id: w for w in stranded}
        held = {w.id: w for w in holders}
        displacements = [
            Displacement(
                by_id[p.preemptor], p.placements, p.cost, tuple(held[v] for v in p.victims)
            )
            for p in plans
        ]
        outcome = self._store.preempt(displacements, now)
        for wid in outcome.gone:  # cancelled or completed meanwhile: the intake may be late
            allocation.release(wid)
        victims = []
        for w, _by in outcome.preempted:
            allocation.release(w.id)
            queue.add(w)
            self.history.add(w.id, now)
            victims.append(w)
        placed = []
        taken = {w.id for w, _ in outcome.preempted}
        for w in outcome.placed:
            if not allocation.restore(w, now):
                log.error("preemptor %s does not fit where it was planned", w.id)
            queue.remove(w.id)
            (d,) = [d for d in displacements if d.preemptor.id == w.id]
            placed.append((w, tuple(v for v in d.victims if v.id in taken)))
            log.info(
                "preempted %s for %s (priority %d)",
                ", ".join(v.id for v in d.victims if v.id in taken) or "nothing",
                w.id,
                w.spec.priority,
            )
        return Preempted(tuple(placed), tuple(victims))
