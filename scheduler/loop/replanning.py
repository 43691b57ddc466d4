"""Which reservations the loop plans again: a reservation is a plan, not a promise, until it
starts. After a trigger (a new forecast; capacity freed, which may open a cheaper hour) every
reservation that starts an hour or more from now is looked at once, a few per cycle, so that
the cost of a cycle does not grow with the reservations held."""

from __future__ import annotations

from datetime import datetime, timedelta

from scheduler.domain import Workload
from scheduler.loop.allocation import Allocation, start_of

# a reservation this close to its start keeps its plan
MIN_LEAD = timedelta(hours=1)


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
