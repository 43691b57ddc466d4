"""min_bins and its parts on instances small enough to check by hand."""

from __future__ import annotations

import time

import numpy as np
import pytest

from scheduler.solver.binpack import (
    check_packing,
    first_fit_decreasing,
    greedy_pack,
    lower_bound,
    min_bins,
)
from scheduler.solver.binpack.cg_search import cg_search
from scheduler.solver.binpack.work import Work


def test_lower_bound_is_the_largest_dimension_sum():
    # sums (15, 15) of capacity 10 -> at least 2 bins
    assert lower_bound([[6, 1], [1, 6], [4, 4], [4, 4]], [10, 10]) == 2


def test_lower_bound_counts_items_no_two_of_which_share_a_bin():
    # three items above half the capacity: three bins although the sum says two
    assert lower_bound([[6], [6], [6]], [10]) == 3


def test_lower_bound_ignores_pairwise_conflicts_when_sizes_can_be_negative():
    # (6, -5) + (6, -5) + (-2, 20) = (10, 10): all three fit in one bin
    items = [[6, -5], [6, -5], [-2, 20]]
    assert lower_bound(items, [10, 20]) == 1
    assert min_bins(items, [10, 20], time_limit_s=2).bins == 1


def test_lower_bound_counts_items_over_a_third_as_half_a_bin():
    # five items of 4 in bins of 10: the sum and L2 say 2; no bin holds three of them, which
    # the dual-feasible function u^(2) (an item in (1/3, 1/2] counts 1/2) sees: 5/2 -> 3
    assert lower_bound([[4]] * 5, [10]) == 3
    assert lower_bound([[4, 1]] * 5, [10, 10]) == 3


def _optimum_by_enumeration(items: np.ndarray, cap: np.ndarray) -> int:
    """The fewest bins, by trying every bin for every item (tiny instances only)."""
    best = len(items)
    loads: list[np.ndarray] = []

    def place(i: int) -> None:
        nonlocal best
        if len(loads) >= best:
            return
        if i == len(items):
            best = len(loads)
            return
        for load in loads:
            if (load + items[i] <= cap).all():
                load += items[i]
                place(i + 1)
                load -= items[i]
        loads.append(items[i].copy())
        place(i + 1)
        loads.pop()

    place(0)
    return best


def test_lower_bound_never_exceeds_the_optimum_found_by_enumeration():
    # sizes between a quarter and a half of the bin, where the dual-feasible functions raise
    # the bound above the sums, L2 and the clique on several of these instances
    rng = np.random.default_rng(3)
    tight = 0
    for _ in range(150):
        d = int(rng.integers(1, 3))
        cap = np.full(d, 20)
        items = rng.integers(6, 11, size=(int(rng.integers(3, 10)), d))
        opt = _optimum_by_enumeration(items, cap)
        lb = lower_bound(items, cap)
        assert lb <= opt, (items.tolist(), lb, opt)
        tight += lb == opt
    assert tight >= 100  # and it is a useful bound: tight on most of them


def test_first_fit_decreasing_places_largest_first_into_first_bin_with_room():
    # order 7, 5, 3, 3, 2: 7 -> b0, 5 -> b1, 3 -> b0 (10), 3 -> b1 (8), 2 -> b1 (10)
    x = first_fit_decreasing([[3], [7], [2], [5], [3]], [10])
    assert x.tolist() == [0, 0, 1, 1, 1]


def test_min_bins_proves_a_hand_checkable_optimum_above_every_simple_bound():
    # five items of 4 in bins of 10: the sum says 2, but no bin holds three (12 > 10), so 3
    res = min_bins([[4]] * 5, [10], time_limit_s=10)
    assert res.bins == 3
    assert res.optimal
    assert res.lower_bound == 3
    assert check_packing([[4]] * 5, [10], res.assignment) == 3


def test_min_bins_finds_two_bins_where_first_fit_decreasing_needs_three():
    # FFD: 5 and 4 share a bin (9), then 3+3+3 (9), and 2 needs a third bin;
    # {5, 3, 2} and {4, 3, 3} fill two bins exactly
    items = [[5], [4], [3], [3], [3], [2]]
    assert len(np.unique(first_fit_decreasing(items, [10]))) == 3
    res = min_bins(items, [10], time_limit_s=5)
    assert res.bins == 2 and res.optimal
    assert check_packing(items, [10], res.assignment) == 2


def test_min_bins_packs_exact_triplets_into_n_over_3_bins():
    # two bins filled exactly, three items each, in both dimensions
    items = [[50, 20], [30, 45], [20, 35], [45, 30], [35, 40], [20, 30]]
    res = min_bins(items, [100, 100], time_limit_s=5)
    assert res.bins == 2 and res.optimal
    loads = np.zeros((2, 2), dtype=int)
    np.add.at(loads, res.assignment, np.asarray(items))
    assert (loads == 100).all()


def test_min_bins_same_seed_same_packing():
    rng = np.random.default_rng(7)
    items = rng.integers(10, 45, size=(24, 3))
    a = min_bins(items, [100, 100, 100], time_limit_s=5, seed=3)
    b = min_bins(items, [100, 100, 100], time_limit_s=5, seed=3)
    assert a.bins == b.bins
    assert a.assignment.tolist() == b.assignment.tolist()


def test_min_bins_never_uses_more_bins_than_the_greedy_and_never_overfills():
    rng = np.random.default_rng(11)
    items = rng.integers(100, 400, size=(40, 5))
    cap = np.full(5, 1000)
    res = min_bins(items, cap, time_limit_s=1.0, seed=0)
    greedy = len(np.unique(greedy_pack(items, cap)))
    assert lower_bound(items, cap) <= res.bins <= greedy
    assert check_packing(items, cap, res.assignment) == res.bins


def test_min_bins_rejects_an_item_larger_than_a_bin():
    with pytest.raises(ValueError, match="item 1"):
        min_bins([[5, 5], [11, 1]], [10, 10])


def test_check_packing_names_the_overfull_bin():
    with pytest.raises(ValueError, match="bin 1 is over capacity"):
        check_packing([[6], [6], [6]], [10], [0, 1, 1])


def test_min_bins_of_nothing_is_zero_bins():
    res = min_bins(np.zeros((0, 2), dtype=int), [10, 10])
    assert res.bins == 0 and res.optimal


# ----------------------------------------------------------------------------- column generation


def _cg(items: np.ndarray, cap: np.ndarray, start: np.ndarray, lb: int, units: float):
    """Column generation with ``units`` of work (and a generous wall clock)."""
    work = Work(units, time.monotonic() + 10 * units)
    return cg_search(items, cap, start, lb, work, work.units, 0, {})


def test_column_generation_bound_proves_five_bins_where_the_simple_bounds_say_four():
    # (7,3), (5,8), (7,4), (5,8) and (4,3): no two of these five share a bin of (10, 10), but
    # the greedy clique stops at four and the sums say 2; the LP over bin patterns needs 5
    items = np.asarray([[7, 3], [5, 8], [4, 2], [7, 4], [5, 8], [4, 3]])
    cap = np.asarray([10, 10])
    assert lower_bound(items, cap) == 4
    start = greedy_pack(items, cap)
    packing, lb, _ = _cg(items, cap, start, 4, 5)
    assert lb == 5
    assert check_packing(items, cap, packing) == 5


def test_column_generation_packs_into_fewer_bins_than_its_start():
    # first-fit decreasing needs 3 bins; {5, 3, 2} and {4, 3, 3} fill two exactly
    items = np.asarray([[5], [4], [3], [3], [3], [2]])
    cap = np.asarray([10])
    start = first_fit_decreasing(items, cap)
    assert len(np.unique(start)) == 3
    packing, _, _ = _cg(items, cap, start, 2, 5)
    assert check_packing(items, cap, packing) == 2


def test_column_generation_lower_bound_never_exceeds_a_proven_optimum():
    rng = np.random.default_rng(5)
    cap = np.asarray([10, 10])
    checked = 0
    for _ in range(25):
        items = rng.integers(2, 9, size=(int(rng.integers(5, 9)), 2))
        best = min_bins(items, cap, time_limit_s=5)
        if not best.optimal:
            continue
        packing, lb, _ = _cg(items, cap, greedy_pack(items, cap), lower_bound(items, cap), 2)
        assert lb <= best.bins
        assert check_packing(items, cap, packing) >= best.bins
        checked += 1
    assert checked >= 20


# ----------------------------------------------------------------------------- repeatability


def test_min_bins_gives_the_same_packing_and_work_whatever_the_wall_clock_slack():
    # the search ends on its work limit (no bound proves the packing), so a wall clock with
    # more slack, as on a less loaded machine, changes nothing
    rng = np.random.default_rng(0)
    items = rng.integers(5, 45, size=(50, 8))
    cap = [100] * 8
    a = min_bins(items, cap, time_limit_s=30, work_limit=0.3, seed=0)
    b = min_bins(items, cap, time_limit_s=90, work_limit=0.3, seed=0)
    assert not a.optimal and a.stats["wall_capped"] == 0
    assert a.stats["work_used"] >= 0.3
    assert a.assignment.tolist() == b.assignment.tolist()
    assert a.stats == b.stats


def test_min_bins_column_generation_is_repeatable():
    # column generation, its exact pricing (CP-SAT) and a dive run here: same seed, same stats
    rng = np.random.default_rng(0)
    items = rng.integers(5, 60, size=(40, 3))
    cap = [100, 100, 100]
    a = min_bins(items, cap, time_limit_s=30, work_limit=0.5, seed=1)
    b = min_bins(items, cap, time_limit_s=60, work_limit=0.5, seed=1)
    assert a.stats["cg_rounds"] > 0 and a.stats["cg_exact_calls"] > 0
    assert a.assignment.tolist() == b.assignment.tolist()
    assert a.stats == b.stats


def test_min_bins_wall_clock_still_stops_the_search_and_says_so():
    rng = np.random.default_rng(0)
    items = rng.integers(5, 45, size=(50, 8))
    started = time.monotonic()
    res = min_bins(items, [100] * 8, time_limit_s=0.2, work_limit=100, seed=0)
    assert time.monotonic() - started < 5
    assert res.stats["wall_capped"] == 1
    assert check_packing(items, [100] * 8, res.assignment) == res.bins
