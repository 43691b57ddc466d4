"""The column-generation search: price at the root until the LP is solved as far as pricing
can tell (or time runs out), then dive: fix the columns the LP chooses, price over the items
left, and again, until few items are left for the greedies and the exact model.

Each dive of ``DIVES`` fixes the columns of LP value at least its threshold; once every dive has
been tried, they repeat with the LP values shuffled by random factors.
"""

from __future__ import annotations

import math
import time

import numpy as np

from scheduler.solver.binpack.bounds import lower_bound
from scheduler.solver.binpack.colgen import ColumnGeneration
from scheduler.solver.binpack.exact import FULL_MODEL_MAX_VARS, full_model
from scheduler.solver.binpack.greedy import greedy_pack
from scheduler.solver.binpack.packing import EPS, IntArray, bins_used, relabel

# column generation only with at least this much time left (building the LP takes some)
CG_MIN_TIME_S = 0.25
# time limit of one exact pricing problem (CP-SAT), and of the last before giving up
CG_EXACT_PRICING_S = 0.3
CG_EXACT_PRICING_MAX_S = 1.5
# the residual of a dive is handed to the general search at this many items
DIVE_RESIDUAL_ITEMS = 25
# (fix columns with at least this LP value, pricing rounds between two fixings) per dive
DIVES = ((0.5, 3), (0.8, 5), (0.95, 8))


def cg_search(
    a: IntArray,
    c: IntArray,
    x: IntArray,
    lb: int,
    deadline: float,
    seed: int,
    stats: dict[str, float],
) -> tuple[IntArray, int, int]:
    """Column generation from packing ``x`` and lower bound ``lb``, then dives, until
    ``deadline`` (``time.monotonic()``). Returns (best packing, lower bound, the LP's rounded-up
    value when no column prices out any more, else 0)."""
    start = time.monotonic()
    cg = ColumnGeneration(a, c, x, seed, start + 0.1 * (deadline - start))
    root_end = start + 0.75 * (deadline - start)
    best = x
    lb, converged = _root(cg, bins_used(best), lb, root_end)
    cg.solve_lp()
    lp_bins = math.ceil(cg.value - EPS)
    stats["cg_rounds"] = cg.rounds
    stats["cg_columns"] = len(cg.cols)
    stats["cg_lp"] = round(cg.value, 3)
    stats["cg_exact_calls"] = cg.pricing.exact_calls
    stats["cg_root_s"] = round(time.monotonic() - start, 2)
    dives = 0
    while time.monotonic() < deadline and bins_used(best) > max(lb, lp_bins):
        fix_at, rounds = DIVES[dives % len(DIVES)]
        now = time.monotonic()
        until = min(deadline, now + max(1.0, 0.5 * (deadline - now)))
        y = _dive(cg, best, fix_at, rounds, dives >= len(DIVES), until, seed)
        dives += 1
        if y is not None and bins_used(y) < bins_used(best):
            best = relabel(y)
            stats["dive_improved"] = dives
        cg.reset_dive()
    stats["dives"] = dives
    stats["dive_s"] = round(time.monotonic() - start - stats["cg_root_s"], 2)
    return best, lb, lp_bins if converged else 0


def _root(cg: ColumnGeneration, bins: int, lb: int, deadline: float) -> tuple[int, bool]:
    """Pricing rounds until the lower bound meets ``bins``, no column prices out any more or
    the deadline passes. Returns (the lower bound, whether no column prices out)."""
    exact_s = CG_EXACT_PRICING_S
    while time.monotonic() < deadline:
        added, bound = cg.price_round(min(exact_s, deadline - time.monotonic()))
        if bound is not None and bound > lb:
            lb = bound
        if lb >= bins:
            break
        if not added:
            if exact_s < CG_EXACT_PRICING_MAX_S:
                exact_s = CG_EXACT_PRICING_MAX_S  # a longer look before giving up
                continue
            return lb, True
    return lb, False


def _dive(
    cg: ColumnGeneration,
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
        if math.ceil(cg.value - EPS) >= bins_used(best):
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


def _complete(cg: ColumnGeneration, deadline: float, seed: int) -> IntArray:
    """The fixed columns of a dive, and the items left packed by the greedies and, when few
    enough and time is left, the exact model."""
    a, c = cg.a, cg.c
    out, b = cg.packing_of_fixed()
    rest = np.flatnonzero(~cg.fixed)
    if len(rest):
        sub = greedy_pack(a[rest], c)
        left = deadline - time.monotonic()
        ub_sub = bins_used(sub)
        if len(rest) * (ub_sub - 1) <= FULL_MODEL_MAX_VARS and left > 0:
            lb_sub = lower_bound(a[rest], c)
            if ub_sub > lb_sub:
                better, _ = full_model(a[rest], c, sub, lb_sub, min(1.0, 0.5 * left), seed, 1)
                if better is not None:
                    sub = better
        out[rest] = sub + b
    return out
