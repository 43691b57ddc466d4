"""A budget of work for ``min_bins``: deterministic work units with a wall-clock safety net.

Every search charges what it does (CP-SAT its deterministic time, the numpy searches a count of
array cells touched, GLOP its simplex iterations) and stops when the units run out, so the same
instance and seed give the same packing whatever the load on the machine. One unit is about a
second of one core of the 2-core x86_64 development machine (``CELLS_PER_UNIT`` and
``LP_CELLS_PER_UNIT`` are calibrated there). The wall-clock deadline still stops everything:
when it cuts in first (a loaded or slower machine), the result depends on the load again, and
``wall_capped`` says so.
"""

from __future__ import annotations

import time

# numpy array cells (items x dimensions x candidates ...) per work unit, and the cells one
# numpy call costs however small its arrays (its Python overhead)
CELLS_PER_UNIT = 1.6e8
CALL_CELLS = 4_000
# Python-level steps (a dict or solver call on one item) per work unit
STEPS_PER_UNIT = 1.3e6
# GLOP: simplex iterations x (rows + non-zeros) per unit, and the units of one solve however
# small
LP_CELLS_PER_UNIT = 3.5e7
LP_SOLVE_UNITS = 1e-3
# CP-SAT deterministic time per work unit, and the units of one solve however small (building
# the model, presolve)
CPSAT_DTIME_PER_UNIT = 0.48
CPSAT_SOLVE_UNITS = 0.02


class Work:
    """``units`` of deterministic work, and a wall-clock deadline (``time.monotonic()``) that
    stops the search even with units left."""

    def __init__(self, units: float, wall_deadline: float) -> None:
        self.units = units
        self.used = 0.0
        self.wall_deadline = wall_deadline
        self.wall_capped = False

    def charge(self, units: float) -> None:
        """Count ``units`` of work done."""
        self.used += units

    def cells(self, count: float) -> None:
        """Count a numpy step over ``count`` array cells."""
        self.used += (count + CALL_CELLS) / CELLS_PER_UNIT

    def steps(self, count: float) -> None:
        """Count ``count`` Python-level steps."""
        self.used += count / STEPS_PER_UNIT

    def left(self) -> float:
        """Units left (0 once the wall-clock deadline has passed)."""
        if time.monotonic() >= self.wall_deadline:
            self.wall_capped = self.wall_capped or self.used < self.units
            return 0.0
        return max(0.0, self.units - self.used)

    def done(self) -> bool:
        """Whether the units or the wall clock have run out."""
        return self.left() <= 0.0

    def wall_left(self) -> float:
        """Seconds left before the wall-clock deadline."""
        return max(0.0, self.wall_deadline - time.monotonic())

    def until(self, share: float) -> float:
        """A mark ``share`` of the units left from now, for ``past`` and ``left_until``."""
        return self.used + share * self.left()

    def past(self, mark: float) -> bool:
        """Whether the work done has reached ``mark`` or the budget has run out."""
        return self.used >= mark or self.done()

    def left_until(self, mark: float) -> float:
        """Units left before ``mark`` (and within the budget)."""
        return max(0.0, min(mark - self.used, self.left()))
