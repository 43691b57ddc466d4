"""The set-covering LP over bin patterns (columns) for column generation, and its dives.

The LP minimises the sum of lambda_p over the columns p such that every item is covered at
least once; GLOP solves it, and its duals price new columns (``pricing``). A dive fixes the
columns the LP chooses, forbids every column that overlaps them and prices again over the items
left.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from scheduler.solver.binpack.packing import EPS, FloatArray, IntArray, bins_used
from scheduler.solver.binpack.pricing import CG_COLUMNS_PER_ROUND, Pricing
from scheduler.solver.binpack.work import LP_CELLS_PER_UNIT, LP_SOLVE_UNITS, Work

# starting columns per bin of the incumbent
INITIAL_COLUMNS_PER_BIN = 15


class ColumnGeneration:
    """The LP with its columns: the bins of the incumbent packing ``x`` and more bins filled
    from random seed items (until ``work`` reaches ``init_until``), then what pricing rounds
    add. The work done is charged to ``work``."""

    def __init__(
        self, a: IntArray, c: IntArray, x: IntArray, seed: int, work: Work, init_until: float
    ) -> None:
        from ortools.linear_solver import pywraplp

        self.a, self.c = a, c
        self.n = len(a)
        self.work = work
        self.rng = np.random.default_rng(seed)
        self.pricing = Pricing(a, c, self.rng, seed, work)
        lp = pywraplp.Solver.CreateSolver("GLOP")
        assert lp is not None
        self.lp = lp
        self.rows = [lp.Constraint(1, lp.infinity()) for _ in range(self.n)]
        self.obj = lp.Objective()
        self.obj.SetMinimization()
        self.cols: list[tuple[int, ...]] = []
        self.vars: list[Any] = []
        self.nonzeros = 0
        self.seen: set[tuple[int, ...]] = set()
        self.fixed = np.zeros(self.n, dtype=bool)  # items in a fixed column
        self.fixed_cols: list[int] = []
        self.forbidden: list[int] = []
        for b in range(bins_used(x)):
            self.add(tuple(np.flatnonzero(x == b).tolist()))
        self.initial = len(self.cols)
        self._add_seeded_columns(INITIAL_COLUMNS_PER_BIN * bins_used(x), init_until)
        self.value = math.inf
        self.duals = np.zeros(self.n)
        self.rounds = 0

    def _add_seeded_columns(self, count: int, until: float) -> None:
        """Up to ``count`` bins filled from random seeds by each item's share of the bin volume
        (dimensions weighted by their total load): well filled and varied starting columns."""
        a, c = self.a, self.c
        w = np.clip(a, 0, None) / c
        share = w.sum(axis=0) / max(float(w.sum()), EPS)
        volume = w @ share + EPS
        seeds = self.rng.permutation(self.n)[:count]
        for i in seeds.tolist():
            if self.work.past(until):
                break
            noisy = volume * self.rng.uniform(0.8, 1.2, self.n)
            self.add(tuple(sorted(self.pricing.extend(noisy, [i], a[i].copy(), ratio=True))))

    def add(self, items: tuple[int, ...]) -> bool:
        """Add the column of ``items`` unless it is known or holds a fixed item; whether added."""
        if items in self.seen or self.fixed[list(items)].any():
            return False
        self.work.steps(len(items))
        self.nonzeros += len(items)
        self.seen.add(items)
        self.cols.append(items)
        v = self.lp.NumVar(0, self.lp.infinity(), "")
        for i in items:
            self.rows[i].SetCoefficient(v, 1)
        self.obj.SetCoefficient(v, 1)
        self.vars.append(v)
        return True

    def solve_lp(self) -> None:
        """Solve the LP: its value and the duals of the items not fixed (clipped at 0)."""
        self.lp.Solve()
        cells = self.lp.iterations() * (self.n + self.nonzeros)
        self.work.charge(LP_SOLVE_UNITS + cells / LP_CELLS_PER_UNIT)
        self.value = self.obj.Value()
        pi = np.asarray([r.dual_value() for r in self.rows], dtype=np.float64)
        pi[self.fixed] = 0.0
        self.duals = np.clip(pi, 0.0, None)
        self.rounds += 1

    def lam(self) -> FloatArray:
        """The LP value of every column."""
        return np.asarray([v.solution_value() for v in self.vars], dtype=np.float64)

    def price_round(self, exact_units: float) -> tuple[int, int | None]:
        """Solve the LP and add columns. Returns (columns added, a lower bound on the bins of
        the original problem when the round gives one)."""
        self.solve_lp()
        pricing = self.pricing
        found = sorted(pricing.heuristic(self.duals), reverse=True)
        found = pricing.improved(self.duals, found)
        added = sum(self.add(t) for _, t in found[:CG_COLUMNS_PER_ROUND])
        if added or exact_units <= 0 or self.fixed.any():
            return added, None
        # once more with other random seeds before the (slower) exact pricing
        found = sorted(pricing.heuristic(self.duals), reverse=True)
        added = sum(self.add(t) for _, t in found[:CG_COLUMNS_PER_ROUND])
        if added:
            return added, None
        col, ub = pricing.exact(self.duals, exact_units)
        bound = None
        if math.isfinite(ub):
            # Farley: sum(pi) / max(1, best column value) bounds the LP from below
            bound = math.ceil(float(self.duals.sum()) / max(1.0, ub) - EPS)
        if col is not None and col[0] > 1 + EPS and self.add(col[1]):
            added = 1
        return added, bound

    def fix(self, fix_at: float, shuffle: bool) -> int:
        """Fix the columns the LP chooses (lambda >= ``fix_at``, largest first, disjoint; at
        least the largest; with ``shuffle``, lambda is scaled by random factors first) and
        forbid the columns that overlap them. Returns how many were fixed."""
        lam = self.lam()
        if shuffle:
            lam = lam * self.rng.uniform(0.8, 1.0, len(lam))
        fixed_now = 0
        for p in np.argsort(-lam, kind="stable").tolist():
            if p in self.fixed_cols or lam[p] < EPS:
                continue
            if lam[p] < fix_at and fixed_now:
                break
            items = list(self.cols[p])
            if self.fixed[items].any():
                continue
            self.fixed[items] = True
            self.fixed_cols.append(p)
            self.vars[p].SetLb(1)
            fixed_now += 1
        if fixed_now:
            self._forbid_overlapping(lam)
        return fixed_now

    def _forbid_overlapping(self, lam: FloatArray) -> None:
        """Forbid the columns that overlap the fixed ones; what is left of the incumbent's bins
        and of the columns in use is added back, which keeps every other item coverable."""
        fixed_set = set(self.fixed_cols)
        restrict: list[tuple[int, ...]] = []
        for p, col in enumerate(self.cols):
            if p not in fixed_set and self.fixed[list(col)].any():
                self.vars[p].SetUb(0)
                self.forbidden.append(p)
                if p < self.initial or lam[p] > EPS:
                    restrict.append(tuple(i for i in col if not self.fixed[i]))
        for col in restrict:
            if col:
                self.add(col)

    def reset_dive(self) -> None:
        """Undo the fixings of a dive (the columns it added stay)."""
        for p in self.fixed_cols:
            self.vars[p].SetLb(0)
        for p in self.forbidden:
            self.vars[p].SetUb(self.lp.infinity())
        self.fixed[:] = False
        self.fixed_cols = []
        self.forbidden = []

    def packing_of_fixed(self) -> tuple[IntArray, int]:
        """The fixed columns as bins 0..k-1 (-1 for the other items), and k."""
        out = np.full(self.n, -1, dtype=np.int64)
        for b, p in enumerate(self.fixed_cols):
            out[list(self.cols[p])] = b
        return out, len(self.fixed_cols)
