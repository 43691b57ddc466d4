"""Consolidation: pack items (vectors) into the fewest identical bins (nodes).

Every node is the same and the question is how few of them can hold the work, which is what
lets idle servers power down. ``min_bins`` combines

1. lower bounds: the sum per dimension, the Martello–Toth L2 bound per dimension and a clique
   of items no two of which share a bin;
2. strong greedies for an upper bound: first-fit and best-fit decreasing by several size
   measures and bin-centric "fill one bin with the best-aligned item" rules;
3. searches while the bound is not met, each within the time left: an exact cover by triples
   when every bin must be filled exactly (the Triplet instances, CP-SAT); the full assignment
   model with symmetry breaking for small instances (CP-SAT); column generation: the
   set-covering LP over bin patterns (GLOP), priced by greedy fills, best triples through a
   seed item and swaps, then by an exact multi-dimensional knapsack (CP-SAT) whose bound gives
   Farley's lower bound, followed by dives that fix the columns the LP chooses and price
   again over the items left; and a tabu search that empties the two lightest bins and swaps
   items back until what is left out fits into one bin.

Every search stops as soon as the packing meets a proven lower bound. Column generation also
stops the whole search when its LP, solved as far as the pricing can tell, rounds up to the
bins found (the last searches cannot beat the LP; not a proof, so ``optimal`` stays False).

Sizes are integers and may be negative in some dimension (some published instances have them):
the bounds that would be wrong then (cliques, L2) are skipped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from ortools.sat.python import cp_model

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

# the full assignment model is built only up to this many item x bin booleans
FULL_MODEL_MAX_VARS = 2_500
# a swap of the tabu search may make the items left out heavier by at most this much
# (in bins: sizes are normalised by the capacity and summed over dimensions)
MAX_DELTA = 0.05


@dataclass(frozen=True)
class BinPackResult:
    """``assignment[i]`` is the bin (0..bins-1) of item i. ``optimal`` means ``bins`` equals a
    proven lower bound or CP-SAT proved that no packing uses fewer bins."""

    bins: int
    assignment: IntArray
    lower_bound: int
    optimal: bool
    seconds: float = 0.0
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def gap(self) -> float:
        return (self.bins - self.lower_bound) / self.bins if self.bins else 0.0


# ----------------------------------------------------------------------------- checks


def _as_problem(items: npt.ArrayLike, capacity: npt.ArrayLike) -> tuple[IntArray, IntArray]:
    a = np.asarray(items, dtype=np.int64)
    c = np.asarray(capacity, dtype=np.int64).reshape(-1)
    if a.ndim == 1:
        a = a.reshape(-1, 1)
    if a.ndim != 2 or a.shape[1] != len(c):
        raise ValueError(f"items must be (n, {len(c)}), got shape {a.shape}")
    if (c <= 0).any():
        raise ValueError(f"capacities must be > 0, got {c.tolist()}")
    too_big = np.flatnonzero((a > c).any(axis=1))
    if len(too_big):
        i = int(too_big[0])
        raise ValueError(f"item {i} {a[i].tolist()} exceeds the bin capacity {c.tolist()}")
    return a, c


def check_packing(items: npt.ArrayLike, capacity: npt.ArrayLike, assignment: npt.ArrayLike) -> int:
    """The number of bins a packing uses; raises ValueError if any bin is over capacity."""
    a, c = _as_problem(items, capacity)
    x = np.asarray(assignment, dtype=np.int64)
    if x.shape != (len(a),) or (len(x) and x.min() < 0):
        raise ValueError("assignment must give a bin >= 0 for every item")
    if not len(x):
        return 0
    loads = np.zeros((int(x.max()) + 1, a.shape[1]), dtype=np.int64)
    np.add.at(loads, x, a)
    over = np.flatnonzero((loads > c).any(axis=1))
    if len(over):
        raise ValueError(f"bin {int(over[0])} is over capacity: {loads[over[0]].tolist()}")
    return len(np.unique(x))


# ----------------------------------------------------------------------------- bounds


def _l2_one_dim(sizes: IntArray, cap: int) -> int:
    """Martello–Toth L2 for one dimension (non-negative sizes)."""
    s = np.sort(sizes[sizes > 0])[::-1]
    if not len(s):
        return 0
    best = math.ceil(int(s.sum()) / cap)
    half = cap / 2
    for alpha in [*np.unique(s[s <= half]).tolist(), 0]:
        j1 = s > cap - alpha
        j2 = (s <= cap - alpha) & (s > half)
        j3 = (s <= half) & (s >= alpha)
        room = int(j2.sum()) * cap - int(s[j2].sum())
        extra = max(0, math.ceil((int(s[j3].sum()) - room) / cap))
        best = max(best, int(j1.sum()) + int(j2.sum()) + extra)
    return best


def _conflict_clique(a: IntArray, c: IntArray) -> list[int]:
    """A set of items no two of which fit in one bin (greedy, largest first)."""
    norm = a / c
    order = np.argsort(-norm.max(axis=1), kind="stable")
    clique: list[int] = []
    for i in order.tolist():
        if all(((a[i] + a[j]) > c).any() for j in clique):
            clique.append(i)
        elif len(clique) and norm[i].max() <= 0.5:
            break  # an item no larger than half a bin in every dimension never conflicts
    return clique


def lower_bound(items: npt.ArrayLike, capacity: npt.ArrayLike) -> int:
    """A valid lower bound on the number of bins."""
    a, c = _as_problem(items, capacity)
    if not len(a):
        return 0
    lb = max(1, int(max(math.ceil(int(s) / int(k)) for s, k in zip(a.sum(axis=0), c, strict=True))))
    if (a >= 0).all():
        lb = max(lb, len(_conflict_clique(a, c)))
        for d in range(a.shape[1]):
            lb = max(lb, _l2_one_dim(a[:, d], int(c[d])))
    return lb


# ----------------------------------------------------------------------------- greedies

SIZE_MEASURES: dict[str, Callable[[FloatArray], FloatArray]] = {
    "sum": lambda w: w.sum(axis=1),
    "max": lambda w: w.max(axis=1),
    "l2": lambda w: np.sqrt((w * w).sum(axis=1)),
    "weighted": lambda w: (w * w.sum(axis=0)).sum(axis=1),  # scarce dimensions count more
}


def first_fit_decreasing(
    items: npt.ArrayLike, capacity: npt.ArrayLike, measure: str = "sum"
) -> IntArray:
    """First-fit decreasing: items by decreasing size (``measure`` of the capacity-normalised
    vector), each into the first open bin where it fits."""
    a, c = _as_problem(items, capacity)
    order = np.argsort(-SIZE_MEASURES[measure](a / c), kind="stable")
    return _first_fit(a, c, order)


def _first_fit(a: IntArray, c: IntArray, order: IntArray | Sequence[int]) -> IntArray:
    n, d = a.shape
    loads = np.zeros((max(n, 1), d), dtype=np.int64)
    used = 0
    out = np.full(n, -1, dtype=np.int64)
    for i in order:
        fits = np.flatnonzero(((loads[:used] + a[i]) <= c).all(axis=1))
        b = int(fits[0]) if len(fits) else used
        if b == used:
            used += 1
        loads[b] += a[i]
        out[i] = b
    return out


def _best_fit(a: IntArray, c: IntArray, order: IntArray) -> IntArray:
    """Best-fit decreasing: into the open bin left with the least normalised room."""
    n, d = a.shape
    loads = np.zeros((max(n, 1), d), dtype=np.int64)
    used = 0
    out = np.full(n, -1, dtype=np.int64)
    for i in order:
        after = loads[:used] + a[i]
        ok = (after <= c).all(axis=1)
        if ok.any():
            room = ((c - after) / c).sum(axis=1)
            room[~ok] = np.inf
            b = int(np.argmin(room))
        else:
            b = used
            used += 1
        loads[b] += a[i]
        out[i] = b
    return out


def _bin_centric(
    a: IntArray, c: IntArray, rule: str, rng: np.random.Generator | None = None
) -> IntArray:
    """Fill one bin at a time: open a bin with the largest remaining item, then add the
    fitting item that best matches the room left (``dot``: largest dot product of the item
    with the room, weighted by how scarce each dimension is; ``l2``: smallest distance
    between room and item), until nothing fits."""
    n, _d = a.shape
    w = a / c
    scarcity = np.maximum(w.sum(axis=0), 1e-9)
    scarcity = scarcity / scarcity.sum()
    size = (w * scarcity).sum(axis=1)
    if rng is not None:
        size = size * rng.uniform(0.9, 1.1, n)
    left = np.ones(n, dtype=bool)
    out = np.full(n, -1, dtype=np.int64)
    b = 0
    while left.any():
        cand = np.flatnonzero(left)
        first = int(cand[np.argmax(size[cand])])
        load = a[first].copy()
        out[first] = b
        left[first] = False
        while True:
            cand = np.flatnonzero(left)
            if not len(cand):
                break
            fit = cand[((load + a[cand]) <= c).all(axis=1)]
            if not len(fit):
                break
            room = (c - load) / c
            if rule == "dot":
                score = (w[fit] * room * scarcity).sum(axis=1)
                pick = int(fit[np.argmax(score)])
            else:
                diff = room - w[fit]
                pick = int(fit[np.argmin((diff * diff).sum(axis=1))])
            load += a[pick]
            out[pick] = b
            left[pick] = False
        b += 1
    return out


def _bins_used(x: IntArray) -> int:
    return len(np.unique(x)) if len(x) else 0


def greedy_pack(items: npt.ArrayLike, capacity: npt.ArrayLike) -> IntArray:
    """The best of several greedies (fewest bins); bins numbered 0..k-1."""
    a, c = _as_problem(items, capacity)
    if not len(a):
        return np.zeros(0, dtype=np.int64)
    best: IntArray | None = None
    w = a / c
    candidates: list[IntArray] = []
    for measure in SIZE_MEASURES.values():
        order = np.argsort(-measure(w), kind="stable")
        candidates.append(_first_fit(a, c, order))
        candidates.append(_best_fit(a, c, order))
    candidates.append(_bin_centric(a, c, "dot"))
    candidates.append(_bin_centric(a, c, "l2"))
    for x in candidates:
        if best is None or _bins_used(x) < _bins_used(best):
            best = x
    assert best is not None
    return _relabel(best)


def _relabel(x: IntArray) -> IntArray:
    """Bins renumbered 0..k-1 in order of their first item."""
    _, first, inverse = np.unique(x, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    return np.asarray(rank[inverse], dtype=np.int64)


# ----------------------------------------------------------------------------- CP-SAT pieces


def _solver(time_limit_s: float, seed: int, workers: int) -> cp_model.CpSolver:
    s = cp_model.CpSolver()
    s.parameters.max_time_in_seconds = max(0.01, time_limit_s)
    s.parameters.num_workers = workers
    s.parameters.random_seed = seed
    return s


def _full_model(
    a: IntArray, c: IntArray, ub_x: IntArray, lb: int, time_limit_s: float, seed: int, workers: int
) -> tuple[IntArray | None, bool]:
    """The assignment model over at most ub-1 bins: minimise the bins used. Returns (packing
    better than ``ub_x`` or None, whether the best bin count is proven optimal)."""
    n, d = a.shape
    ub = _bins_used(ub_x)
    nb = ub - 1  # only a better packing is of interest
    nonneg = bool((a >= 0).all())
    # Symmetry breaking: a clique of conflicting items goes to bins 0..k-1, and every other item
    # (in decreasing size) to a bin no later than its position in that order.
    clique = _conflict_clique(a, c) if nonneg else []
    in_clique = set(clique)
    by_size = np.argsort(-(a / c).sum(axis=1), kind="stable").tolist()
    order = clique + [i for i in by_size if i not in in_clique]
    model = cp_model.CpModel()
    used = [model.new_bool_var(f"used[{b}]") for b in range(nb)]
    x: dict[tuple[int, int], cp_model.IntVar] = {}
    if len(clique) > nb:
        return None, True  # the clique alone needs more bins than a better packing has
    for pos, i in enumerate(order):
        if pos < len(clique):
            x[i, pos] = model.new_bool_var(f"x[{i},{pos}]")
            model.add(x[i, pos] == 1)
            continue
        for b in range(min(pos + 1, nb)):
            x[i, b] = model.new_bool_var(f"x[{i},{b}]")
    # every item in exactly one bin
    of_item: dict[int, list[cp_model.IntVar]] = {}
    for (i, _), v in x.items():
        of_item.setdefault(i, []).append(v)
    for vs_i in of_item.values():
        model.add_exactly_one(vs_i)
    # capacity of every used bin in every dimension; nothing in an unused bin
    by_bin: dict[int, list[int]] = {}
    for i, b in x:
        by_bin.setdefault(b, []).append(i)
    for b, members in by_bin.items():
        vs = [x[i, b] for i in members]
        for k in range(d):
            coefs = [int(a[i, k]) for i in members]
            if sum(max(0, v) for v in coefs) > c[k]:
                model.add(cp_model.LinearExpr.weighted_sum(vs, coefs) <= int(c[k]) * used[b])
        for v in vs:
            model.add_implication(v, used[b])
    # used bins come first
    for b in range(nb - 1):
        model.add_implication(used[b + 1], used[b])
    model.add(sum(used) >= lb)
    model.minimize(sum(used))
    # hint: the greedy packing relabelled to respect the symmetry breaking where it can
    hint = _relabel_for_order(ub_x, order)
    for (i, b), v in x.items():
        model.add_hint(v, int(hint[i] == b))
    solver = _solver(time_limit_s, seed, workers)
    status = solver.solve(model)
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        out = np.full(n, -1, dtype=np.int64)
        for (i, b), v in x.items():
            if solver.boolean_value(v):
                out[i] = b
        return _relabel(out), status == cp_model.OPTIMAL
    # INFEASIBLE: no packing with fewer than ub bins, the greedy one is optimal
    return None, status == cp_model.INFEASIBLE


def _relabel_for_order(x: IntArray, order: list[int]) -> IntArray:
    """Bins renumbered by the position (in ``order``) of their first item, which satisfies
    "item at position p goes to a bin <= p" (a hint, so clique items may still clash)."""
    pos = np.empty(len(order), dtype=np.int64)
    pos[np.asarray(order, dtype=np.int64)] = np.arange(len(order))
    first: dict[int, int] = {}
    for i in order:
        first.setdefault(int(x[i]), int(pos[i]))
    ranked = sorted(first, key=lambda b: first[b])
    label = {b: k for k, b in enumerate(ranked)}
    return np.asarray([label[int(b)] for b in x], dtype=np.int64)


def _triple_cover(
    a: IntArray, c: IntArray, time_limit_s: float, seed: int, workers: int
) -> IntArray | None:
    """When n = 3B and every dimension sums to exactly B bins, a packing into B bins fills
    every bin exactly; look for one made of triples (an exact cover). None if not applicable
    or not found in time."""
    n, _d = a.shape
    if n % 3 or not n:
        return None
    nb = n // 3
    if not (a.sum(axis=0) == nb * c).all():
        return None
    index: dict[bytes, list[int]] = {}
    for i in range(n):
        index.setdefault(a[i].tobytes(), []).append(i)
    triples: list[tuple[int, int, int]] = []
    seen: set[tuple[int, int, int]] = set()
    for i in range(n):
        need = c - a[i] - a[i + 1 :]
        for off, row in enumerate(need):
            j = i + 1 + off
            for k in index.get(row.tobytes(), ()):
                if k > j:
                    t = (i, j, k)
                    if t not in seen:
                        seen.add(t)
                        triples.append(t)
        if len(triples) > 200_000:
            return None  # not a triplet-like instance; the model would be too large
    if not triples:
        return None
    covers: list[list[int]] = [[] for _ in range(n)]
    for t_index, t in enumerate(triples):
        for i in t:
            covers[i].append(t_index)
    if any(not cv for cv in covers):
        return None
    model = cp_model.CpModel()
    y = [model.new_bool_var(f"triple[{t}]") for t in range(len(triples))]
    for i in range(n):
        model.add_exactly_one([y[t] for t in covers[i]])  # every item in exactly one triple
    solver = _solver(time_limit_s, seed, workers)
    # quick restarts find exact covers of 500 items in well under a second where the default
    # single-worker search can stall for many seconds
    solver.parameters.search_branching = cp_model.PORTFOLIO_WITH_QUICK_RESTART_SEARCH
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    out = np.full(n, -1, dtype=np.int64)
    b = 0
    for k, v in enumerate(y):
        if solver.boolean_value(v):
            out[list(triples[k])] = b
            b += 1
    return out


# ----------------------------------------------------------------------------- tabu search


def _tabu_reduce(
    a: IntArray,
    c: IntArray,
    x: IntArray,
    lb: int,
    deadline: float,
    rng: np.random.Generator,
    stats: dict[str, float],
) -> IntArray:
    """Close bins one at a time: take the items of a light bin out, then insert them into the
    other bins by swaps (put an item in, take out one or two lighter ones) under a tabu rule,
    until nothing is left out (a consistent-neighbourhood search in the spirit of Buljubasic
    and Vasquez). Returns the best packing found."""
    _n, _d = a.shape
    weight = (np.clip(a, 0, None) / c).sum(axis=1) + 1e-6
    best = _relabel(x)
    nb = _bins_used(best)
    while nb > lb and time.monotonic() < deadline:
        out = _tabu_attempt(a, c, best, weight, deadline, rng, stats)
        if out is None:
            break
        best = _relabel(out)
        nb = _bins_used(best)
        stats["tabu_bins_closed"] = stats.get("tabu_bins_closed", 0) + 1
    return best


def _tabu_attempt(
    a: IntArray,
    c: IntArray,
    start: IntArray,
    weight: FloatArray,
    deadline: float,
    rng: np.random.Generator,
    stats: dict[str, float],
) -> IntArray | None:
    """A packing with one bin fewer than ``start``, or None by the deadline.

    Two light bins are emptied; their items are "out". The search moves items between the
    out set and the other bins until the out set fits into one bin, which becomes the last.
    """
    n, d = a.shape
    nb = _bins_used(start)
    if nb < 2:
        return None
    bin_weight = np.bincount(start, weights=weight, minlength=nb)
    light = np.argsort(bin_weight + rng.uniform(0, 0.2, nb))[:2]
    x = start.copy()
    keep = np.ones(nb, dtype=bool)
    keep[light] = False
    new_label = np.cumsum(keep) - 1
    x = np.where(keep[x], new_label[x], -1)
    m = nb - 2
    loads = np.zeros((max(m, 1), d), dtype=np.int64)
    np.add.at(loads, x[x >= 0], a[x >= 0])
    tabu = np.zeros((n, max(m, 1)), dtype=np.int64)  # iteration until which item may not enter bin
    it = 0
    while True:
        it += 1
        if it % 64 == 0 and time.monotonic() > deadline:
            stats["tabu_iterations"] = stats.get("tabu_iterations", 0) + it
            return None
        out_items = np.flatnonzero(x < 0)
        if (a[out_items].sum(axis=0) <= c).all():
            stats["tabu_iterations"] = stats.get("tabu_iterations", 0) + it
            x[out_items] = m
            return x
        # 1. an item that fits somewhere as it is: into the bin it fills best
        placed = False
        for i in out_items[np.argsort(-weight[out_items])]:
            ok = ((loads + a[i]) <= c).all(axis=1) & (tabu[i] < it)
            if ok.any():
                slack = ((c - loads - a[i]) / c).sum(axis=1)
                slack[~ok] = np.inf
                b = int(np.argmin(slack))
                x[i] = b
                loads[b] += a[i]
                placed = True
                break
        if placed:
            continue
        # 2. the best swap: item i in, one or two lighter items of its bin out
        best_delta = np.inf
        best_move: tuple[int, int, tuple[int, ...]] | None = None
        inside = np.flatnonzero(x >= 0)
        bins_in = x[inside]
        # pairs of items sharing a bin
        order = inside[np.argsort(bins_in, kind="stable")]
        pairs_i: list[int] = []
        pairs_j: list[int] = []
        sorted_bins = x[order]
        starts = np.searchsorted(sorted_bins, np.arange(m + 1))
        for b in range(m):
            mem = order[starts[b] : starts[b + 1]]
            for p in range(len(mem)):
                for q in range(p + 1, len(mem)):
                    pairs_i.append(int(mem[p]))
                    pairs_j.append(int(mem[q]))
        pi = np.asarray(pairs_i, dtype=np.int64)
        pj = np.asarray(pairs_j, dtype=np.int64)
        for i in out_items:
            excess = loads + a[i] - c  # per bin: what must leave for i to fit
            allowed = tabu[i] < it
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
            best_move = None
        if best_move is None:
            # stuck: let a random item out of a random bin to move on
            j = int(rng.choice(inside))
            b = int(x[j])
            loads[b] -= a[j]
            x[j] = -1
            tabu[j, b] = it + int(rng.integers(5, 15))
            continue
        i, b, removed = best_move
        for j in removed:
            x[j] = -1
            loads[b] -= a[j]
            tabu[j, b] = it + int(rng.integers(5, 15))
        x[i] = b
        loads[b] += a[i]


# ----------------------------------------------------------------------------- column generation

# columns added per pricing round, and seeds of each pricing heuristic
CG_COLUMNS_PER_ROUND = 60
CG_SEEDS = 20
# partners x thirds x dimensions looked at per seed by the triple heuristic (when bins hold
# few items), its seeds (of the best and of the random ones), and items for the best pairs
TRIPLE_CELLS = 400_000
TRIPLE_SEEDS = 6
PAIR_POOL = 200
# starting columns per bin of the incumbent
INITIAL_COLUMNS_PER_BIN = 15
# columns improved by swaps per round, and swaps per column
SWAP_COLUMNS = 15
SWAP_ROUNDS = 4
# column generation only with at least this much time left (building the LP takes some)
CG_MIN_TIME_S = 0.25
# time limit of one exact pricing problem (CP-SAT), and of the last before giving up
CG_EXACT_PRICING_S = 0.3
CG_EXACT_PRICING_MAX_S = 1.5
# the residual of a dive is handed to the general search at this many items
DIVE_RESIDUAL_ITEMS = 25
EPS = 1e-6


class _ColumnGeneration:
    """The set-covering LP over bin patterns (min sum of lambda_p, every item covered once),
    solved by GLOP with columns priced by heuristics (greedy fills, seed pairs and triples
    completed greedily) and, when they find nothing, an exact multi-dimensional knapsack
    (CP-SAT) whose bound gives Farley's lower bound. Then a dive: fix the columns the LP
    chooses (lambda >= 1/2), forbid every column that overlaps them, price again over the
    items left, until few are left."""

    def __init__(
        self, a: IntArray, c: IntArray, x: IntArray, seed: int, init_deadline: float
    ) -> None:
        from ortools.linear_solver import pywraplp

        self.a, self.c, self.seed = a, c, seed
        self.n, self.d = a.shape
        self.rng = np.random.default_rng(seed)
        lp = pywraplp.Solver.CreateSolver("GLOP")
        assert lp is not None
        self.lp = lp
        self.rows = [lp.Constraint(1, lp.infinity()) for _ in range(self.n)]
        self.obj = lp.Objective()
        self.obj.SetMinimization()
        self.cols: list[tuple[int, ...]] = []
        self.vars: list[Any] = []
        self.seen: set[tuple[int, ...]] = set()
        self.fixed = np.zeros(self.n, dtype=bool)  # items in a fixed column
        self.fixed_cols: list[int] = []
        self.forbidden: list[int] = []
        for b in range(_bins_used(x)):
            self.add(tuple(np.flatnonzero(x == b).tolist()))
        self.initial = len(self.cols)
        # more starting columns: bins filled from random seeds by each item's share of the bin
        # volume (dimensions weighted by their total load), well filled and varied
        w = np.clip(a, 0, None) / c
        share = w.sum(axis=0) / max(float(w.sum()), EPS)
        volume = w @ share + EPS
        seeds = self.rng.permutation(self.n)[: INITIAL_COLUMNS_PER_BIN * _bins_used(x)]
        for i in seeds.tolist():
            if time.monotonic() > init_deadline:
                break
            noisy = volume * self.rng.uniform(0.8, 1.2, self.n)
            self.add(tuple(sorted(self._extend(noisy, [i], a[i].copy(), ratio=True))))
        # no bin holds more items than this (the smallest sizes of every dimension)
        low = np.cumsum(np.sort(np.clip(a, 0, None), axis=0), axis=0)
        self.max_per_bin = int((low <= c).all(axis=1).sum())
        self.value = math.inf
        self.duals = np.zeros(self.n)
        self.rounds = 0
        self.exact_calls = 0

    def add(self, items: tuple[int, ...]) -> bool:
        if items in self.seen or self.fixed[list(items)].any():
            return False
        self.seen.add(items)
        self.cols.append(items)
        v = self.lp.NumVar(0, self.lp.infinity(), "")
        for i in items:
            self.rows[i].SetCoefficient(v, 1)
        self.obj.SetCoefficient(v, 1)
        self.vars.append(v)
        return True

    def solve_lp(self) -> None:
        self.lp.Solve()
        self.value = self.obj.Value()
        pi = np.asarray([r.dual_value() for r in self.rows], dtype=np.float64)
        pi[self.fixed] = 0.0
        self.duals = np.clip(pi, 0.0, None)
        self.rounds += 1

    def lam(self) -> FloatArray:
        return np.asarray([v.solution_value() for v in self.vars], dtype=np.float64)

    # -- pricing heuristics: each returns (value, sorted items) with value > 1

    def _extend(self, pi: FloatArray, chosen: list[int], load: IntArray, ratio: bool) -> list[int]:
        a, c = self.a, self.c
        avail = pi > EPS
        avail[chosen] = False
        while True:
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
            chosen = self._extend(pi, chosen, load, ratio=True)
            load = a[chosen].sum(axis=0)
        return chosen

    def _price_heuristic(self, pi: FloatArray) -> list[tuple[float, tuple[int, ...]]]:
        a, c, rng = self.a, self.c, self.rng
        cand = np.flatnonzero(pi > EPS)
        out: list[tuple[float, tuple[int, ...]]] = []

        def keep(chosen: list[int]) -> None:
            v = float(pi[chosen].sum())
            if v > 1 + EPS:
                out.append((v, tuple(sorted(chosen))))

        if not len(cand):
            return out
        by_value = cand[np.argsort(-pi[cand], kind="stable")]
        half = CG_SEEDS // 2
        seeds = (
            by_value[:half].tolist()
            + rng.choice(cand, min(len(cand), CG_SEEDS - half), replace=False).tolist()
        )
        top = by_value[:PAIR_POOL]
        few_per_bin = len(cand) <= 4.5 * max(1.0, float(pi.sum()))
        triple_pool = int(math.sqrt(TRIPLE_CELLS / self.d))
        triple_seeds = set(seeds[:TRIPLE_SEEDS] + seeds[half : half + TRIPLE_SEEDS])
        for i in dict.fromkeys(seeds):
            # greedy fill from the seed by value per room used
            keep(self._extend(pi, [i], a[i].copy(), ratio=True))
            if not few_per_bin or i not in triple_seeds:
                continue
            # the best triple through the seed (best third item for every partner)
            js = cand[(a[cand] <= c - a[i]).all(axis=1) & (cand != i)]
            if len(js) > triple_pool:
                js = rng.choice(js, triple_pool, replace=False)
            if not len(js):
                continue
            r = c - a[i] - a[js]
            fit = (a[js][None, :, :] <= r[:, None, :]).all(axis=-1)
            np.fill_diagonal(fit, False)
            pk = np.where(fit, pi[js][None, :], 0.0)
            kbest = np.argmax(pk, axis=1)
            third = pk[np.arange(len(js)), kbest]
            val = pi[js] + third
            for t in np.argsort(-val)[:3].tolist():
                chosen = [i, int(js[t])]
                if third[t] > 0:
                    chosen.append(int(js[kbest[t]]))
                keep(self._extend(pi, chosen, a[chosen].sum(axis=0), ratio=False))
        # the best pairs overall, completed greedily
        if len(top) >= 2:
            pair_fit = ((a[top][:, None, :] + a[top][None, :, :]) <= c).all(axis=-1)
            v2 = np.where(pair_fit, pi[top][:, None] + pi[top][None, :], -1.0)
            v2[np.tril_indices(len(top))] = -1.0
            flat = v2.ravel()
            k = min(CG_COLUMNS_PER_ROUND, int((flat > 0).sum()))
            if k > 0:
                for t, f in enumerate(np.argpartition(-flat, k - 1)[:k].tolist()):
                    p, q = divmod(f, len(top))
                    chosen = [int(top[p]), int(top[q])]
                    keep(self._extend(pi, chosen, a[chosen].sum(axis=0), ratio=t % 2 == 1))
        return out

    def _price_exact(self, time_s: float) -> tuple[tuple[float, tuple[int, ...]] | None, float]:
        """The best column (or None) and an upper bound on the best column's value."""
        a, c, pi = self.a, self.c, self.duals
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
        solver = _solver(time_s, self.seed, 1)
        status = solver.solve(model)
        self.exact_calls += 1
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return None, math.inf
        chosen = [int(cand[k]) for k, v in enumerate(z) if solver.boolean_value(v)]
        ub = solver.best_objective_bound / scale
        return (float(pi[chosen].sum()), tuple(sorted(chosen))), ub

    def _improved(
        self, found: list[tuple[float, tuple[int, ...]]]
    ) -> list[tuple[float, tuple[int, ...]]]:
        """The best columns improved by swaps (the originals are kept too), best first."""
        pi = self.duals
        extra = []
        for _, t in found[:SWAP_COLUMNS]:
            col = self._improve(pi, list(t))
            extra.append((float(pi[col].sum()), tuple(sorted(col))))
        return sorted(set(found + extra), reverse=True)

    def price_round(self, exact_time_s: float) -> tuple[int, int | None]:
        """Solve the LP and add columns. Returns (columns added, a lower bound on the bins of
        the original problem when the round gives one)."""
        self.solve_lp()
        found = sorted(self._price_heuristic(self.duals), reverse=True)
        found = self._improved(found)
        added = sum(self.add(t) for _, t in found[:CG_COLUMNS_PER_ROUND])
        if added or exact_time_s <= 0 or self.fixed.any():
            return added, None
        # once more with other random seeds before the (slower) exact pricing
        found = sorted(self._price_heuristic(self.duals), reverse=True)
        added = sum(self.add(t) for _, t in found[:CG_COLUMNS_PER_ROUND])
        if added:
            return added, None
        col, ub = self._price_exact(exact_time_s)
        bound = None
        if math.isfinite(ub):
            # Farley: sum(pi) / max(1, best column value) bounds the LP from below
            bound = math.ceil(float(self.duals.sum()) / max(1.0, ub) - EPS)
        if col is not None and col[0] > 1 + EPS and self.add(col[1]):
            added = 1
        return added, bound

    def reset_dive(self) -> None:
        for p in self.fixed_cols:
            self.vars[p].SetLb(0)
        for p in self.forbidden:
            self.vars[p].SetUb(self.lp.infinity())
        self.fixed[:] = False
        self.fixed_cols = []
        self.forbidden = []

    def fix(self, fix_at: float, shuffle: bool) -> int:
        """Fix the columns the LP chooses (lambda >= DIVE_FIX_AT, largest first, disjoint; at
        least the largest) and forbid the columns that overlap them. Returns how many."""
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
            # columns overlapping the fixed ones are forbidden; what is left of the incumbent's
            # bins and of the columns in use keeps every other item coverable
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
        return fixed_now

    def packing_of_fixed(self) -> tuple[IntArray, int]:
        out = np.full(self.n, -1, dtype=np.int64)
        for b, p in enumerate(self.fixed_cols):
            out[list(self.cols[p])] = b
        return out, len(self.fixed_cols)


def _cg_search(
    a: IntArray,
    c: IntArray,
    x: IntArray,
    lb: int,
    deadline: float,
    seed: int,
    stats: dict[str, float],
) -> tuple[IntArray, int, int]:
    """Column generation, then dives. Returns (best packing, lower bound, the LP's rounded-up
    value when no column prices out any more, else 0)."""
    start = time.monotonic()
    cg = _ColumnGeneration(a, c, x, seed, start + 0.1 * (deadline - start))
    root_end = start + 0.75 * (deadline - start)
    best = x
    converged = False
    exact_s = CG_EXACT_PRICING_S
    while time.monotonic() < root_end:
        added, bound = cg.price_round(min(exact_s, root_end - time.monotonic()))
        if bound is not None and bound > lb:
            lb = bound
        if lb >= _bins_used(best):
            break
        if not added:
            if exact_s < CG_EXACT_PRICING_MAX_S:
                exact_s = CG_EXACT_PRICING_MAX_S  # a longer look before giving up
                continue
            converged = True
            break
    cg.solve_lp()
    lp_bins = math.ceil(cg.value - EPS)
    stats["cg_rounds"] = cg.rounds
    stats["cg_columns"] = len(cg.cols)
    stats["cg_lp"] = round(cg.value, 3)
    stats["cg_exact_calls"] = cg.exact_calls
    stats["cg_root_s"] = round(time.monotonic() - start, 2)
    dives = 0
    while time.monotonic() < deadline and _bins_used(best) > max(lb, lp_bins):
        fix_at, rounds = DIVES[dives % len(DIVES)]
        now = time.monotonic()
        until = min(deadline, now + max(1.0, 0.5 * (deadline - now)))
        y = _dive(cg, best, fix_at, rounds, dives >= len(DIVES), until, seed)
        dives += 1
        if y is not None and _bins_used(y) < _bins_used(best):
            best = _relabel(y)
            stats["dive_improved"] = dives
        cg.reset_dive()
    stats["dives"] = dives
    stats["dive_s"] = round(time.monotonic() - start - stats["cg_root_s"], 2)
    return best, lb, lp_bins if converged else 0


# (fix columns with at least this LP value, pricing rounds between two fixings) per dive
DIVES = ((0.5, 3), (0.8, 5), (0.95, 8))


def _dive(
    cg: _ColumnGeneration,
    best: IntArray,
    fix_at: float,
    rounds: int,
    shuffle: bool,
    deadline: float,
    seed: int,
) -> IntArray | None:
    """Fix the columns the LP chooses, price over the items left, and again, until few items
    are left (packed by the greedies and the exact model) or the LP cannot beat ``best``."""
    a = cg.a
    while time.monotonic() < deadline:
        cg.solve_lp()
        if math.ceil(cg.value - EPS) >= _bins_used(best):
            return None
        lam = cg.lam()
        if (np.minimum(lam, 1 - lam) < EPS).all():  # integral
            out = np.full(len(a), -1, dtype=np.int64)
            for b, p in enumerate(np.flatnonzero(lam > 0.5).tolist()):
                out[[i for i in cg.cols[p] if out[i] < 0]] = b
            return out
        if not cg.fix(fix_at, shuffle):
            return None
        if (~cg.fixed).sum() <= DIVE_RESIDUAL_ITEMS:
            return _complete(cg, deadline, seed)
        for _ in range(rounds):  # pricing over the items left
            if time.monotonic() >= deadline or not cg.price_round(0.0)[0]:
                break
    # out of time: what the LP has fixed so far, the rest by the greedies
    return _complete(cg, deadline, seed) if cg.fixed.any() else None


def _complete(cg: _ColumnGeneration, deadline: float, seed: int) -> IntArray:
    """The fixed columns of a dive, and the items left packed by the greedies and, when few
    enough and time is left, the exact model."""
    a, c = cg.a, cg.c
    out, b = cg.packing_of_fixed()
    rest = np.flatnonzero(~cg.fixed)
    if len(rest):
        sub = greedy_pack(a[rest], c)
        left = deadline - time.monotonic()
        ub_sub = _bins_used(sub)
        if len(rest) * (ub_sub - 1) <= FULL_MODEL_MAX_VARS and left > 0:
            lb_sub = lower_bound(a[rest], c)
            if ub_sub > lb_sub:
                better, _ = _full_model(a[rest], c, sub, lb_sub, min(1.0, 0.5 * left), seed, 1)
                if better is not None:
                    sub = better
        out[rest] = sub + b
    return out


# ----------------------------------------------------------------------------- entry point


def min_bins(
    items: npt.ArrayLike,
    capacity: npt.ArrayLike,
    *,
    time_limit_s: float = 10.0,
    seed: int = 0,
    num_workers: int = 1,
) -> BinPackResult:
    """Pack ``items`` (n x d integer sizes) into the fewest bins of ``capacity`` (d).

    Stops at the time limit with the best packing found; ``optimal`` says whether the bin
    count is proven minimal. The same seed gives the same packing when no time limit cuts in.
    """
    started = time.monotonic()
    deadline = started + time_limit_s
    a, c = _as_problem(items, capacity)
    n = len(a)
    stats: dict[str, float] = {}
    if n == 0:
        return BinPackResult(0, np.zeros(0, dtype=np.int64), 0, True, 0.0, stats)
    lb = lower_bound(a, c)
    x = greedy_pack(a, c)
    stats["greedy_bins"] = _bins_used(x)
    proven = _bins_used(x) <= lb
    stop = False
    rng = np.random.default_rng(seed)

    def left() -> float:
        return deadline - time.monotonic()

    if not proven and n % 3 == 0 and lb * 3 == n:
        # not all of the time: where no exact cover turns up, the other searches still run
        t = _triple_cover(a, c, 0.5 * left(), seed, num_workers)
        if t is not None:
            x, proven = t, True
            stats["method_triples"] = 1
    if not proven and left() > 0 and n * (_bins_used(x) - 1) <= FULL_MODEL_MAX_VARS:
        better, optimal = _full_model(a, c, x, lb, 0.3 * left(), seed, num_workers)
        if better is not None:
            x = better
        proven = optimal or _bins_used(x) <= lb
        stats["full_model"] = 1
    if not proven and left() > CG_MIN_TIME_S and bool((a >= 0).all()):
        y, lb, lp_bins = _cg_search(a, c, x, lb, time.monotonic() + 0.9 * left(), seed, stats)
        if _bins_used(y) < _bins_used(x):
            x = y
            stats["cg_bins"] = _bins_used(y)
        proven = _bins_used(x) <= lb
        # the LP, solved as far as pricing can tell, leaves nothing to gain: stop early (not a
        # proof, so ``optimal`` stays False)
        stop = stop or (lp_bins > 0 and _bins_used(x) <= lp_bins)
    if not proven and not stop and left() > 0:
        x = _tabu_reduce(a, c, x, lb, deadline, rng, stats)
        proven = _bins_used(x) <= lb
    x = _relabel(x)
    bins = check_packing(a, c, x)
    lower = bins if proven else lb
    return BinPackResult(bins, x, lower, proven, time.monotonic() - started, stats)
