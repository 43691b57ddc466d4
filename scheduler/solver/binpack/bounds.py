"""Lower bounds on the number of bins: the sum per dimension, a clique of items no two of
which share a bin, the Martello–Toth L2 bound per dimension and, per dimension, dual-feasible
functions (Fekete and Schepers' u^(k) after a threshold, as in Carlier, Clautiaux and Moukrim).

The clique and L2 bounds assume sizes are not negative (some published instances have negative
sizes); with a negative size they would be wrong, so only the sum is used then.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from scheduler.solver.binpack.packing import IntArray, as_problem


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


# dual-feasible functions u^(k) for k = 1..DFF_MAX_K, after at most DFF_THRESHOLDS thresholds
DFF_MAX_K = 6
DFF_THRESHOLDS = 48


def _dff_one_dim(sizes: IntArray, cap: int) -> int:
    """The best bound sum(u_k(f_t(x))) over thresholds t and k, for one dimension
    (non-negative sizes), with x = size / cap.

    f_t (t <= 1/2) counts an item above 1 - t as a whole bin, drops one below t and keeps the
    rest; u_k(x) = x when (k+1)x is an integer, else floor((k+1)x) / k. Both are dual-feasible
    (items that share a bin keep a sum <= 1), and so is their composition: the sum over all
    items bounds the bins. Computed in integers scaled by k * cap.
    """
    s = sizes[sizes > 0].astype(np.int64)
    if not len(s):
        return 0
    small = np.unique(s[2 * s <= cap])
    if len(small) > DFF_THRESHOLDS:
        small = small[np.linspace(0, len(small) - 1, DFF_THRESHOLDS).round().astype(np.int64)]
    best = 0
    for t in [0, *small.tolist()]:
        whole = int((s > cap - t).sum())
        kept = s[(s >= t) & (s <= cap - t)]
        for k in range(1, DFF_MAX_K + 1):
            up = (k + 1) * kept
            scaled = np.where(up % cap == 0, k * kept, (up // cap) * cap)
            total = whole * k * cap + int(scaled.sum())
            best = max(best, -(-total // (k * cap)))
    return best


def conflict_clique(a: IntArray, c: IntArray) -> list[int]:
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
    a, c = as_problem(items, capacity)
    if not len(a):
        return 0
    lb = max(1, int(max(math.ceil(int(s) / int(k)) for s, k in zip(a.sum(axis=0), c, strict=True))))
    if (a >= 0).all():
        lb = max(lb, len(conflict_clique(a, c)))
        for d in range(a.shape[1]):
            lb = max(lb, _l2_one_dim(a[:, d], int(c[d])), _dff_one_dim(a[:, d], int(c[d])))
    return lb
