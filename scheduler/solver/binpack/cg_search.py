"""The column-generation search: price at the root until the LP is solved as far as pricing
can tell (or its share of the work runs out), then dive: fix the columns the LP chooses, price
over the items left, and again, until few items are left for the greedies and the exact model.

Each dive of ``DIVES`` fixes the columns of LP value at least its threshold; once every dive has
been tried, they repeat with the LP values shuffled by random factors.
"""

from __future__ import annotations

import math

import numpy as np

from scheduler.solver.binpack.bounds import lower_bound
from scheduler.solver.binpack.colgen import ColumnGeneration
from scheduler.solver.binpack.exact import FULL_MODEL_MAX_VARS, full_model
from scheduler.solver.binpack.greedy import greedy_pack
from scheduler.solver.binpack.packing import EPS, IntArray, bins_used, relabel
from scheduler.solver.binpack.work import Work

# column generation only with at least this much work left (building the LP takes some)
CG_MIN_UNITS = 0.25
# work limit of one exact pricing problem (CP-SAT), and of the last before giving up
CG_EXACT_PRICING_UNITS = 0.3
CG_EXACT_PRICING_MAX_UNITS = 1.5
# the greedies' Python-level steps per item (a dozen greedies, a few numpy calls each)
GREEDY_STEPS_PER_ITEM = 60
# the share of column generation's work for pricing at the root (the rest for the dives)
CG_ROOT_SHARE = 0.75
# the residual of a dive is handed to the general search at this many items
DIVE_RESIDUAL_ITEMS = 25
# (fix columns with at least this LP value, pricing rounds between two fixings) per dive
DIVES = ((0.5, 3), (0.8, 5), (0.95, 8))


def cg_search(
    a: IntArray,
    c: IntArray,
    x: IntArray,
    lb: int,
    work: Work,
    until: float,
    seed: int,
    stats: dict[str, float],
) -> tuple[IntArray, int, int]:
    """Column generation from packing ``x`` and lower bound ``lb``, then dives, until ``work``
    reaches ``until`` (a ``Work.until`` mark). Returns (best packing, lower bound, the LP's
    rounded-up value when no column prices out any more, else 0)."""
    start = work.used
    cg = ColumnGeneration(a, c, x, seed, work, start + 0.1 * (until - start))
    root_end = start + CG_ROOT_SHARE * (until - start)
    best = x
    lb, converged = _root(cg, bins_used(best), lb, root_end)
    cg.solve_lp()
    lp_bins = math.ceil(cg.value - EPS)
    stats["cg_rounds"] = cg.rounds
    stats["cg_columns"] = len(cg.cols)
    stats["cg_lp"] = round(cg.value, 3)
    stats["cg_exact_calls"] = cg.pricing.exact_calls
    stats["cg_root_units"] = round(work.used - start, 2)
    dives = 0
    while not work.past(until) and bins_used(best) > max(lb, lp_bins):
        fix_at, rounds = DIVES[dives % len(DIVES)]
        dive_end = min(until, work.used + max(1.0, 0.5 * (until - work.used)))
        y = _dive(cg, best, fix_at, rounds, dives >= len(DIVES), dive_end, seed)
        dives += 1
        if y is not None and bins_used(y) < bins_used(best):
            best = relabel(y)
            stats["dive_improved"] = dives
        cg.reset_dive()
    stats["dives"] = dives
    stats["dive_units"] = round(work.used - start - stats["cg_root_units"], 2)
    return best, lb, lp_bins if converged else 0


def _root(cg: ColumnGeneration, bins: int, lb: int, until: float) -> tuple[int, bool]:
    """Pricing rounds until the lower bound meets ``bins``, no column prices out any more or
    the work reaches ``until``. Returns (the lower bound, whether no column prices out)."""
    exact_units = CG_EXACT_PRICING_UNITS
    work = cg.work
    while not work.past(until):
        added, bound = cg.price_round(min(exact_units, work.left_until(until)))
        if bound is not None and bound > lb:
            lb = bound
        if lb >= bins:
            break
        if not added:
            if exact_units < CG_EXACT_PRICING_MAX_UNITS:
                exact_units = CG_EXACT_PRICING_MAX_UNITS  # a longer look before giving up
                continue
            return lb, True
    return lb, False


def _dive(
    cg: ColumnGeneration,
    best: IntArray,
    fix_at: float,
    rounds: int,
    shuffle: bool,
    until: float,
    seed: int,
) -> IntArray | None:
    """Fix the columns the LP chooses, price over the items left, and again, until few items
    are left (packed by the greedies and the exact model) or the LP cannot beat ``best``."""
    a = cg.a
    while not cg.work.past(until):
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
            return _complete(cg, until, seed)
        for _ in range(rounds):  # pricing over the items left
            if cg.work.past(until) or not cg.price_round(0.0)[0]:
                break
    # out of work: what the LP has fixed so far, the rest by the greedies
    return _complete(cg, until, seed) if cg.fixed.any() else None


def _complete(cg: ColumnGeneration, until: float, seed: int) -> IntArray:
    """The fixed columns of a dive, and the items left packed by the greedies and, when few
    enough and work is left, the exact model."""
    a, c = cg.a, cg.c
    out, b = cg.packing_of_fixed()
    rest = np.flatnonzero(~cg.fixed)
    if len(rest):
        sub = greedy_pack(a[rest], c)
        work = cg.work
        work.steps(GREEDY_STEPS_PER_ITEM * len(rest))
        left = work.left_until(until)
        ub_sub = bins_used(sub)
        if len(rest) * (ub_sub - 1) <= FULL_MODEL_MAX_VARS and left > 0:
            lb_sub = lower_bound(a[rest], c)
            if ub_sub > lb_sub:
                units = min(1.0, 0.5 * left)
                better, _ = full_model(a[rest], c, sub, lb_sub, work, units, seed, 1)
                if better is not None:
                    sub = better
        out[rest] = sub + b
    return out
