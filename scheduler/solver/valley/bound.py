"""The MIP bound (the model with the wake and workload counts integer), solved in a background
thread: HiGHS releases the GIL, so it runs beside packing and CP-SAT and only ever raises the
bound."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from scheduler.solver.budget import TimeBudget
from scheduler.solver.valley.linear import LinearModel, Relaxation

# how long past the budget's end the solve waits for the bound before it reports without it
JOIN_GRACE_S = 0.02


class MipBound(threading.Thread):
    def __init__(
        self, lm: LinearModel, time_limit_s: float, integer: Sequence[int], mip_gap: float
    ) -> None:
        super().__init__(name="valley-mip-bound", daemon=True)
        self.lm, self.time_limit_s, self.integer, self.mip_gap = lm, time_limit_s, integer, mip_gap
        self.outcome: Relaxation | None = None
        self.seconds = 0.0

    def run(self) -> None:
        t = time.monotonic()
        self.outcome = self.lm.solve_mip(self.time_limit_s, self.integer, self.mip_gap + 1e-6)
        self.seconds = time.monotonic() - t

    def result(self, budget: TimeBudget) -> Relaxation | None:
        """The outcome if the MIP finished by the budget's end, plus a little grace."""
        self.join(budget.left() + JOIN_GRACE_S)
        return None if self.is_alive() else self.outcome
