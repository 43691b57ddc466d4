"""Local search that closes bins one at a time: a consistent-neighbourhood tabu search in the
spirit of Buljubasic and Vasquez.

Two light bins are emptied; their items are "out". The search moves items between the out set
and the other bins (an item that fits goes in; otherwise the best swap puts an out item in and
takes one or two lighter items of its bin out, under a tabu rule) until the out set fits into
one bin, which becomes the last: one bin fewer.
"""

from __future__ import annotations

import numpy as np

from scheduler.solver.binpack.packing import FloatArray, IntArray, bins_used, relabel
from scheduler.solver.binpack.work import Work

# a swap may make the items left out heavier by at most this much (in bins: sizes are
# normalised by the capacity and summed over dimensions)
MAX_DELTA = 0.05

# Python-level steps (work units, see ``work``) of trying one out item as it is and in swaps
PLACE_STEPS = 15
SWAP_STEPS = 100

# (item in, its bin, the items that leave the bin)
Swap = tuple[int, int, tuple[int, ...]]


def tabu_reduce(
    a: IntArray,
    c: IntArray,
    x: IntArray,
    lb: int,
    work: Work,
    rng: np.random.Generator,
    stats: dict[str, float],
) -> IntArray:
    """Close bins of packing ``x`` one at a time until ``lb`` bins are left, an attempt fails
    or ``work`` runs out. Returns the best packing found."""
    weight = (np.clip(a, 0, None) / c).sum(axis=1) + 1e-6
    best = relabel(x)
    nb = bins_used(best)
    # an attempt empties two bins and refills one: it needs at least two
    while nb > max(lb, 1) and not work.done():
        out = _Attempt(a, c, best, weight, rng, work).run(stats)
        if out is None:
            break
        best = relabel(out)
        nb = bins_used(best)
        stats["tabu_bins_closed"] = stats.get("tabu_bins_closed", 0) + 1
    return best


class _Attempt:
    """One attempt to pack ``start`` (bins 0..nb-1, nb >= 2) into one bin fewer: ``x[i]`` is
    the bin of item i among the nb-2 kept bins, or -1 while it is out."""

    def __init__(
        self,
        a: IntArray,
        c: IntArray,
        start: IntArray,
        weight: FloatArray,
        rng: np.random.Generator,
        work: Work,
    ) -> None:
        n, d = a.shape
        self.a, self.c, self.weight, self.rng, self.work = a, c, weight, rng, work
        nb = bins_used(start)
        self.m = nb - 2
        bin_weight = np.bincount(start, weights=weight, minlength=nb)
        light = np.argsort(bin_weight + rng.uniform(0, 0.2, nb))[:2]
        keep = np.ones(nb, dtype=bool)
        keep[light] = False
        new_label = np.cumsum(keep) - 1
        x = np.where(keep[start], new_label[start], -1)
        self.x = x
        self.loads = np.zeros((max(self.m, 1), d), dtype=np.int64)
        np.add.at(self.loads, x[x >= 0], a[x >= 0])
        # the iteration until which an item may not enter a bin
        self.tabu = np.zeros((n, max(self.m, 1)), dtype=np.int64)

    def run(self, stats: dict[str, float]) -> IntArray | None:
        """A packing with one bin fewer than ``start``, or None when the work runs out."""
        a, c, x = self.a, self.c, self.x
        it = 0
        while True:
            it += 1
            if it % 16 == 0 and self.work.done():
                stats["tabu_iterations"] = stats.get("tabu_iterations", 0) + it
                return None
            out_items = np.flatnonzero(x < 0)
            if (a[out_items].sum(axis=0) <= c).all():
                stats["tabu_iterations"] = stats.get("tabu_iterations", 0) + it
                x[out_items] = self.m
                return x
            if self._place_as_is(out_items, it):
                continue
            inside = np.flatnonzero(x >= 0)
            move = self._best_swap(out_items, inside, it)
            if move is None:
                # stuck: let a random item out of a random bin to move on
                j = int(self.rng.choice(inside))
                self._let_out(j, int(x[j]), it)
                continue
            i, b, removed = move
            for j in removed:
                self._let_out(j, b, it)
            x[i] = b
            self.loads[b] += a[i]

    def _place_as_is(self, out_items: IntArray, it: int) -> bool:
        """Put the heaviest out item that fits somewhere as it is into the bin it fills best;
        whether there was one."""
        a, c, loads = self.a, self.c, self.loads
        for i in out_items[np.argsort(-self.weight[out_items])]:
            self.work.cells(loads.size)
            self.work.steps(PLACE_STEPS)
            ok = ((loads + a[i]) <= c).all(axis=1) & (self.tabu[i] < it)
            if ok.any():
                slack = ((c - loads - a[i]) / c).sum(axis=1)
                slack[~ok] = np.inf
                b = int(np.argmin(slack))
                self.x[i] = b
                loads[b] += a[i]
                return True
        return False

    def _best_swap(self, out_items: IntArray, inside: IntArray, it: int) -> Swap | None:
        """The swap that makes the out set lightest (an out item in, one or two lighter items
        of its bin out), or None when every swap is tabu or makes it heavier by over
        ``MAX_DELTA``."""
        a, c, x, weight, rng = self.a, self.c, self.x, self.weight, self.rng
        best_delta = np.inf
        best_move: Swap | None = None
        bins_in = x[inside]
        pi, pj = _pairs_sharing_a_bin(x, inside, self.m)
        d = a.shape[1]
        self.work.steps(len(pi))
        for i in out_items:
            self.work.cells(self.loads.size + (len(inside) + len(pi)) * d)
            self.work.steps(SWAP_STEPS)
            excess = self.loads + a[i] - c  # per bin: what must leave for i to fit
            allowed = self.tabu[i] < it
            # one item out
            e1 = excess[bins_in]
            ok1 = (a[inside] >= e1).all(axis=1) & allowed[bins_in]
            if ok1.any():
                delta = weight[inside] - weight[i]
                delta = np.where(ok1, delta, np.inf)
                k = int(np.argmin(delta + rng.uniform(0, 1e-6, len(delta))))
                if delta[k] < best_delta:
                    best_delta = float(delta[k])
                    best_move = (int(i), int(bins_in[k]), (int(inside[k]),))
            # two items out
            if len(pi):
                pb = x[pi]
                ok2 = ((a[pi] + a[pj]) >= excess[pb]).all(axis=1) & allowed[pb]
                if ok2.any():
                    delta = weight[pi] + weight[pj] - weight[i]
                    delta = np.where(ok2, delta, np.inf)
                    k = int(np.argmin(delta + rng.uniform(0, 1e-6, len(delta))))
                    if delta[k] < best_delta:
                        best_delta = float(delta[k])
                        best_move = (int(i), int(pb[k]), (int(pi[k]), int(pj[k])))
        if best_move is not None and best_delta > MAX_DELTA:
            return None
        return best_move

    def _let_out(self, j: int, b: int, it: int) -> None:
        """Take item j out of bin b; it may not go back into b for a few iterations."""
        self.x[j] = -1
        self.loads[b] -= self.a[j]
        self.tabu[j, b] = it + int(self.rng.integers(5, 15))


def _pairs_sharing_a_bin(x: IntArray, inside: IntArray, m: int) -> tuple[IntArray, IntArray]:
    """Every pair of items in the same bin (of bins 0..m-1), as two arrays."""
    order = inside[np.argsort(x[inside], kind="stable")]
    pairs_i: list[int] = []
    pairs_j: list[int] = []
    starts = np.searchsorted(x[order], np.arange(m + 1))
    for b in range(m):
        mem = order[starts[b] : starts[b + 1]]
        for p in range(len(mem)):
            for q in range(p + 1, len(mem)):
                pairs_i.append(int(mem[p]))
                pairs_j.append(int(mem[q]))
    return np.asarray(pairs_i, dtype=np.int64), np.asarray(pairs_j, dtype=np.int64)
