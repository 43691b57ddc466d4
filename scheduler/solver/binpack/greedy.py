"""Greedy packings, the first upper bound: first-fit and best-fit decreasing by several size
measures, and bin-centric rules that fill one bin at a time with the best-aligned item."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from scheduler.solver.binpack.packing import FloatArray, IntArray, as_problem, bins_used, relabel

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
    a, c = as_problem(items, capacity)
    order = np.argsort(-SIZE_MEASURES[measure](a / c), kind="stable")
    return _first_fit(a, c, order)


def greedy_pack(items: npt.ArrayLike, capacity: npt.ArrayLike) -> IntArray:
    """The best of several greedies (fewest bins); bins numbered 0..k-1."""
    a, c = as_problem(items, capacity)
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
        if best is None or bins_used(x) < bins_used(best):
            best = x
    assert best is not None
    return relabel(best)


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


def _bin_centric(a: IntArray, c: IntArray, rule: str) -> IntArray:
    """Fill one bin at a time: open a bin with the largest remaining item, then add the
    fitting item that best matches the room left (``dot``: largest dot product of the item
    with the room, weighted by how scarce each dimension is; ``l2``: smallest distance
    between room and item), until nothing fits."""
    n, _d = a.shape
    w = a / c
    scarcity = np.maximum(w.sum(axis=0), 1e-9)
    scarcity = scarcity / scarcity.sum()
    size = (w * scarcity).sum(axis=1)
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
