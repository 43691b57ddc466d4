"""One time budget per solve: one clock, one end, and the grace the repairs may take past it.

Every phase asks the budget for its share of the time left instead of carrying its own
deadline, so the solve ends when the caller said, whatever the phases (PyVRP's stopping
criteria are the model: small objects the algorithm consults, knowing nothing of the caller).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

# the repairs at the end of packing (GPU re-pack, room for stranded work) are worth more than
# the last milliseconds of CP-SAT: a slow machine may let them run this much late, at most
# GRACE_SHARE of the limit and never more than GRACE_MAX_S. Their own work limits end them
# well before on a quiet machine (so the answer does not depend on its speed); the grace is the
# safety net that keeps a solve within 1.25 x its limit when the machine is busy.
GRACE_SHARE = 0.2
GRACE_MAX_S = 2.0


@dataclass(frozen=True, slots=True)
class TimeBudget:
    """``start`` and ``end`` are ``time.monotonic()`` instants; ``grace`` seconds past ``end``
    are for the repairs only (``left(grace=True)``)."""

    start: float
    end: float
    grace: float = 0.0

    @classmethod
    def of(cls, limit_s: float, deadline: float | None = None) -> TimeBudget:
        """A budget of ``limit_s`` seconds from now, ending no later than ``deadline`` (a
        ``time.monotonic()`` instant) where one is given."""
        now = time.monotonic()
        limit = limit_s if deadline is None else min(limit_s, deadline - now)
        grace = min(GRACE_MAX_S, GRACE_SHARE * max(0.0, limit))
        return cls(now, now + limit, grace)

    @classmethod
    def unlimited(cls) -> TimeBudget:
        return cls(time.monotonic(), float("inf"))

    @property
    def limit(self) -> float:
        """The seconds this budget had when it started (negative if the deadline had passed)."""
        return self.end - self.start

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self, *, grace: bool = False) -> float:
        """Seconds to the end (with the grace: to the end of the grace), never below 0."""
        end = self.end + (self.grace if grace else 0.0)
        return max(0.0, end - time.monotonic())

    def expired(self, *, grace: bool = False) -> bool:
        return time.monotonic() >= self.end + (self.grace if grace else 0.0)

    def share(self, fraction: float, least: float = 0.0) -> float:
        """``fraction`` of the seconds left, at least ``least``: what a phase may take."""
        return max(least, fraction * self.left())
