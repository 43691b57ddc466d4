"""Which reservations the loop plans again: a reservation is a plan, not a promise, until it
starts. After a trigger (a new forecast; capacity freed, which may open a cheaper hour) every
reservation that starts an hour or more from now is looked at once, a few per cycle, so that
the cost of a cycle does not grow with the reservations held."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timedelta

from scheduler.domain import Cost, ReplicaPlacement, Timeline, Workload
from scheduler.loop.allocation import Allocation, start_of
from scheduler.loop.apply import starts_later
from scheduler.solver import PlacementResult
from scheduler.store import Store, StoreError

log = logging.getLogger(__name__)

# a reservation this close to its start keeps its plan
MIN_LEAD = timedelta(hours=1)
# a reservation planned again moves only for at least this saving (CNY per hour of its run)
SAVING_CNY_PER_HOUR = 1e-6


def money(cost: Cost, carbon_price_cny_per_tonne: float) -> float:
    """Energy and priced carbon of a cost, CNY per hour."""
    return cost.energy_cny_per_hour + cost.carbon_kg_per_hour * carbon_price_cny_per_tonne / 1000


class Replanner:
    """See the module docstring. ``trigger`` may be called from any thread."""

    def __init__(self, per_cycle: int) -> None:
        self.per_cycle = per_cycle
        self._triggered = False
        self._todo: list[str] = []

    def trigger(self) -> None:
        self._triggered = True

    @property
    def pending(self) -> int:
        """Reservations still to look at."""
        return len(self._todo)

    def replan(
        self,
        allocation: Allocation,
        store: Store,
        solve: Callable[[list[Workload], Timeline], PlacementResult],
        now: datetime,
        carbon_price_cny_per_tonne: float,
        showing: Callable[[], AbstractContextManager[object]] = nullcontext,
    ) -> bool:
        """Plan the next few reservations again: solved together (``solve``) against the
        timeline without them, each takes its new plan if it still starts later and costs
        less, else keeps the one it has (the timeline kept its room). Returns whether any
        moved (stored, and held by ``allocation``). ``showing``: the context the store write
        and ``allocation``'s change are made in (the loop's: readers wait for both)."""
        candidates = self.take(allocation, now)
        if not candidates:
            return False
        timeline = allocation.timeline.copy()
        for w in candidates:
            timeline.release(w.id)
        try:
            result = solve(candidates, timeline)
        except Exception:
            log.exception("planning %d reservations again failed", len(candidates))
            return False
        changes: dict[str, tuple[Workload, tuple[ReplicaPlacement, ...], Cost]] = {}
        for w in candidates:
            reps = result.placements.get(w.id)
            cost = result.costs.get(w.id)
            if not reps or cost is None or not starts_later(reps):
                continue
            saving = money(w.cost, carbon_price_cny_per_tonne) - money(
                cost, carbon_price_cny_per_tonne
            )
            if saving > SAVING_CNY_PER_HOUR:
                changes[w.id] = (w, reps, cost)
        if not changes:
            return False
        with showing():
            try:
                done = store.replan(changes)
            except StoreError:
                log.exception("cannot store %d reservations planned again", len(changes))
                return False
            for w in done:
                allocation.replace(w)
        return bool(done)

    def take(self, allocation: Allocation, now: datetime) -> list[Workload]:
        """The next few reservations to plan again (none without a trigger since the last
        round was done)."""
        if self._triggered:
            self._triggered = False
            # latest start last: popped first, as it has the most hours to choose from
            self._todo = [w.id for w in allocation.reservations()]
        out: list[Workload] = []
        while self._todo and len(out) < self.per_cycle:
            wid = self._todo.pop()
            if not allocation.is_reserved(wid):
                continue
            w = allocation.holder(wid)
            start = start_of(w)
            if start is not None and start - now >= MIN_LEAD:
                out.append(w)
        return out
