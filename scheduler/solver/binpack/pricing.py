"""Pricing for column generation: bins (columns) whose items' duals sum to more than 1, which
the set-covering LP can still use to lower its value.

Heuristics first (greedy fills from seed items, the best triples through a seed, the best
pairs, each completed greedily, then improved by swaps); when they find nothing, an exact
multi-dimensional knapsack (CP-SAT), whose bound on the best column's value gives Farley's
lower bound on the LP.
"""

from __future__ import annotations

import math

import numpy as np
from ortools.sat.python import cp_model

from scheduler.solver.binpack.exact import cp_solve, cp_solver
from scheduler.solver.binpack.packing import EPS, FloatArray, IntArray
from scheduler.solver.binpack.work import Work

# columns added per pricing round, and seeds of each pricing heuristic
CG_COLUMNS_PER_ROUND = 60
CG_SEEDS = 20
# partners x thirds x dimensions looked at per seed by the triple heuristic (when bins hold
# few items), its seeds (of the best and of the random ones), and items for the best pairs
TRIPLE_CELLS = 400_000
TRIPLE_SEEDS = 6
PAIR_POOL = 200
# columns improved by swaps per round, and swaps per column
SWAP_COLUMNS = 15
SWAP_ROUNDS = 4

# cells (work units, see ``work``) per item of one greedy step besides its sizes: masks, scores
EXTEND_CELLS_PER_ITEM = 6

# a priced column: (the sum of its items' duals, its items sorted)
Column = tuple[float, tuple[int, ...]]


class Pricing:
    """Prices columns of the items ``a`` in bins of ``capacity`` ``c`` against duals ``pi``.
    ``rng`` is shared with the column generation, so one seed fixes the whole search; the work
    done is charged to ``work``."""

    def __init__(
        self, a: IntArray, c: IntArray, rng: np.random.Generator, seed: int, work: Work
    ) -> None:
        self.a, self.c, self.rng, self.seed, self.work = a, c, rng, seed, work
        self.d = a.shape[1]
        # no bin holds more items than this (the smallest sizes of every dimension)
        low = np.cumsum(np.sort(np.clip(a, 0, None), axis=0), axis=0)
        self.max_per_bin = int((low <= c).all(axis=1).sum())
        self.exact_calls = 0

    def extend(self, pi: FloatArray, chosen: list[int], load: IntArray, ratio: bool) -> list[int]:
        """``chosen`` (of load ``load``) filled greedily with the items of positive value that
        fit: by value per room used (``ratio``) or by value."""
        a, c = self.a, self.c
        avail = pi > EPS
        avail[chosen] = False
        while True:
            self.work.cells(a.size + EXTEND_CELLS_PER_ITEM * len(a))
            rem = c - load
            ok = avail & (a <= rem).all(axis=1)
            if not ok.any():
                return chosen
            idx = np.flatnonzero(ok)
            if ratio:
                score = pi[idx] / ((a[idx] / np.maximum(rem, 1)).sum(axis=1) + EPS)
            else:
                score = pi[idx]
            k = int(idx[np.argmax(score)])
            chosen.append(k)
            load = load + a[k]
            avail[k] = False

    def heuristic(self, pi: FloatArray) -> list[Column]:
        """Columns of value > 1 found by greedy fills from seed items (the most valuable and
        random ones), the best triples through some seeds when bins hold few items, and the
        best pairs overall."""
        a, rng = self.a, self.rng
        cand = np.flatnonzero(pi > EPS)
        if not len(cand):
            return []
        by_value = cand[np.argsort(-pi[cand], kind="stable")]
        half = CG_SEEDS // 2
        seeds = (
            by_value[:half].tolist()
            + rng.choice(cand, min(len(cand), CG_SEEDS - half), replace=False).tolist()
        )
        few_per_bin = len(cand) <= 4.5 * max(1.0, float(pi.sum()))
        triple_seeds = set(seeds[:TRIPLE_SEEDS] + seeds[half : half + TRIPLE_SEEDS])
        fills: list[list[int]] = []
        for i in dict.fromkeys(seeds):
            # greedy fill from the seed by value per room used
            fills.append(self.extend(pi, [i], a[i].copy(), ratio=True))
            if few_per_bin and i in triple_seeds:
                fills.extend(self._triples_through(pi, cand, i))
        fills.extend(self._best_pairs(pi, by_value[:PAIR_POOL]))
        out: list[Column] = []
        for chosen in fills:
            v = float(pi[chosen].sum())
            if v > 1 + EPS:
                out.append((v, tuple(sorted(chosen))))
        return out

    def _triples_through(self, pi: FloatArray, cand: IntArray, i: int) -> list[list[int]]:
        """The best three triples through item i (the best third item for every partner, among
        a sample of the partners), completed greedily by value."""
        a, c = self.a, self.c
        js = cand[(a[cand] <= c - a[i]).all(axis=1) & (cand != i)]
        triple_pool = int(math.sqrt(TRIPLE_CELLS / self.d))
        if len(js) > triple_pool:
            js = self.rng.choice(js, triple_pool, replace=False)
        if not len(js):
            return []
        self.work.cells(len(js) * len(js) * self.d)
        r = c - a[i] - a[js]
        fit = (a[js][None, :, :] <= r[:, None, :]).all(axis=-1)
        np.fill_diagonal(fit, False)
        pk = np.where(fit, pi[js][None, :], 0.0)
        kbest = np.argmax(pk, axis=1)
        third = pk[np.arange(len(js)), kbest]
        val = pi[js] + third
        out = []
        for t in np.argsort(-val)[:3].tolist():
            chosen = [i, int(js[t])]
            if third[t] > 0:
                chosen.append(int(js[kbest[t]]))
            out.append(self.extend(pi, chosen, a[chosen].sum(axis=0), ratio=False))
        return out

    def _best_pairs(self, pi: FloatArray, top: IntArray) -> list[list[int]]:
        """The most valuable pairs of ``top`` that share a bin, completed greedily (by value per
        room and by value, alternately)."""
        a, c = self.a, self.c
        if len(top) < 2:
            return []
        self.work.cells(len(top) * len(top) * self.d)
        pair_fit = ((a[top][:, None, :] + a[top][None, :, :]) <= c).all(axis=-1)
        v2 = np.where(pair_fit, pi[top][:, None] + pi[top][None, :], -1.0)
        v2[np.tril_indices(len(top))] = -1.0
        flat = v2.ravel()
        k = min(CG_COLUMNS_PER_ROUND, int((flat > 0).sum()))
        if k <= 0:
            return []
        out = []
        for t, f in enumerate(np.argpartition(-flat, k - 1)[:k].tolist()):
            p, q = divmod(f, len(top))
            chosen = [int(top[p]), int(top[q])]
            out.append(self.extend(pi, chosen, a[chosen].sum(axis=0), ratio=t % 2 == 1))
        return out

    def improved(self, pi: FloatArray, found: list[Column]) -> list[Column]:
        """The best columns improved by swaps (the originals are kept too), best first."""
        extra = []
        for _, t in found[:SWAP_COLUMNS]:
            col = self._improve(pi, list(t))
            extra.append((float(pi[col].sum()), tuple(sorted(col))))
        return sorted(set(found + extra), reverse=True)

    def _improve(self, pi: FloatArray, chosen: list[int]) -> list[int]:
        """Swap an item of the column for a more valuable one that fits in its place, while
        that gains, then fill what room is left."""
        a, c = self.a, self.c
        chosen = list(chosen)
        load = a[chosen].sum(axis=0)
        for _ in range(SWAP_ROUNDS):
            outside = pi > EPS
            outside[chosen] = False
            best_gain, move = EPS, None
            self.work.cells(len(chosen) * a.size)
            for pos, m in enumerate(chosen):
                ok = outside & (a <= c - load + a[m]).all(axis=1)
                if ok.any():
                    idx = np.flatnonzero(ok)
                    j = int(idx[np.argmax(pi[idx])])
                    if pi[j] - pi[m] > best_gain:
                        best_gain, move = float(pi[j] - pi[m]), (pos, j)
            if move is None:
                break
            pos, j = move
            load = load - a[chosen[pos]] + a[j]
            chosen[pos] = j
            chosen = self.extend(pi, chosen, load, ratio=True)
            load = a[chosen].sum(axis=0)
        return chosen

    def exact(self, pi: FloatArray, units: float) -> tuple[Column | None, float]:
        """The best column (or None) and an upper bound on the best column's value, within
        ``units`` of work."""
        a, c = self.a, self.c
        cand = np.flatnonzero(pi > 0)
        if not len(cand):
            return None, 0.0
        scale = 1_000_000
        model = cp_model.CpModel()
        z = [model.new_bool_var(f"z[{i}]") for i in cand]
        for k in range(self.d):
            model.add(cp_model.LinearExpr.weighted_sum(z, a[cand, k].tolist()) <= int(c[k]))
        model.add(sum(z) <= self.max_per_bin)
        # rounded up: the bound stays an upper bound on the true best value
        coef = np.ceil(pi[cand] * scale).astype(np.int64)
        model.maximize(cp_model.LinearExpr.weighted_sum(z, coef.tolist()))
        solver = cp_solver(self.work, units, self.seed, 1)
        status = cp_solve(solver, model, self.work)
        self.exact_calls += 1
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return None, math.inf
        chosen = [int(cand[k]) for k, v in enumerate(z) if solver.boolean_value(v)]
        ub = solver.best_objective_bound / scale
        return (float(pi[chosen].sum()), tuple(sorted(chosen))), ub
