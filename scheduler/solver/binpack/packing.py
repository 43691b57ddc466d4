"""Items, bins and packings as arrays: input checks, the result, and bin numbering.

A packing is an array ``x`` with ``x[i]`` the bin of item i; the parts of ``min_bins`` pass
packings between them in this form.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

# tolerance of LP values (column values, duals, the LP objective)
EPS = 1e-6


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


def as_problem(items: npt.ArrayLike, capacity: npt.ArrayLike) -> tuple[IntArray, IntArray]:
    """``items`` as an (n, d) and ``capacity`` as a (d,) integer array; raises ValueError when
    the shapes disagree, a capacity is not positive or an item is larger than a bin."""
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
    a, c = as_problem(items, capacity)
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


def bins_used(x: IntArray) -> int:
    """The number of distinct bins of packing ``x``."""
    return len(np.unique(x)) if len(x) else 0


def relabel(x: IntArray) -> IntArray:
    """Bins renumbered 0..k-1 in order of their first item."""
    _, first, inverse = np.unique(x, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    return np.asarray(rank[inverse], dtype=np.int64)
