"""``min_bins``: bounds, greedies, then the searches in turn while the bound is not met, each
with a share of the work left (``work``: deterministic units, with a wall-clock cap)."""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt

from scheduler.solver.binpack.bounds import lower_bound
from scheduler.solver.binpack.cg_search import CG_MIN_UNITS, cg_search
from scheduler.solver.binpack.exact import FULL_MODEL_MAX_VARS, full_model, triple_cover
from scheduler.solver.binpack.greedy import greedy_pack
from scheduler.solver.binpack.packing import (
    BinPackResult,
    as_problem,
    bins_used,
    check_packing,
    relabel,
)
from scheduler.solver.binpack.tabu import tabu_reduce
from scheduler.solver.binpack.work import Work

# the share of the work left for column generation (the rest for the tabu search)
CG_SHARE = 0.9


def min_bins(
    items: npt.ArrayLike,
    capacity: npt.ArrayLike,
    *,
    time_limit_s: float = 10.0,
    seed: int = 0,
    num_workers: int = 1,
    work_limit: float | None = None,
) -> BinPackResult:
    """Pack ``items`` (n x d integer sizes) into the fewest bins of ``capacity`` (d).

    The searches stop after ``work_limit`` units of deterministic work (about seconds of one
    core, see ``work``; default ``time_limit_s``) or at the wall-clock ``time_limit_s``,
    whichever comes first, with the best packing found; ``optimal`` says whether the bin count
    is proven minimal. With one worker, the same seed gives the same packing whenever the work
    limit, not the wall clock, ends the search (``stats["wall_capped"]`` is 1 otherwise).
    """
    started = time.monotonic()
    work = Work(time_limit_s if work_limit is None else work_limit, started + time_limit_s)
    a, c = as_problem(items, capacity)
    n = len(a)
    stats: dict[str, float] = {}
    if n == 0:
        return BinPackResult(0, np.zeros(0, dtype=np.int64), 0, True, 0.0, stats)
    lb = lower_bound(a, c)
    x = greedy_pack(a, c)
    stats["greedy_bins"] = bins_used(x)
    proven = bins_used(x) <= lb
    stop = False
    rng = np.random.default_rng(seed)
    left = work.left

    if not proven and n % 3 == 0 and lb * 3 == n:
        # not all of the work: where no exact cover turns up, the other searches still run
        t = triple_cover(a, c, work, 0.5 * left(), seed, num_workers)
        if t is not None:
            x, proven = t, True
            stats["method_triples"] = 1
    if not proven and left() > 0 and n * (bins_used(x) - 1) <= FULL_MODEL_MAX_VARS:
        better, optimal = full_model(a, c, x, lb, work, 0.3 * left(), seed, num_workers)
        if better is not None:
            x = better
        proven = optimal or bins_used(x) <= lb
        stats["full_model"] = 1
    if not proven and left() > CG_MIN_UNITS and bool((a >= 0).all()):
        y, lb, lp_bins = cg_search(a, c, x, lb, work, work.until(CG_SHARE), seed, stats)
        if bins_used(y) < bins_used(x):
            x = y
            stats["cg_bins"] = bins_used(y)
        proven = bins_used(x) <= lb
        # the LP, solved as far as pricing can tell, leaves nothing to gain: stop early (not a
        # proof, so ``optimal`` stays False)
        stop = lp_bins > 0 and bins_used(x) <= lp_bins
    if not proven and not stop and left() > 0:
        x = tabu_reduce(a, c, x, lb, work, rng, stats)
        proven = bins_used(x) <= lb
    stats["work_used"] = round(work.used, 3)
    stats["wall_capped"] = int(work.wall_capped)
    x = relabel(x)
    bins = check_packing(a, c, x)
    lower = bins if proven else lb
    return BinPackResult(bins, x, lower, proven, time.monotonic() - started, stats)
