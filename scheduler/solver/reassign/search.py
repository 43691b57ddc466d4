"""The reassignment engine: hill climbing over shifts and swaps, then large neighbourhood search.

1. **Hill climbing.** A shift pass takes the processes of the costliest machines first and moves
   each to its best machine when that lowers the cost (``State.shift_deltas`` prices every
   machine at once, with every hard rule as a mask). A swap pass exchanges a process with the
   best of a sample of processes elsewhere (``State.swap_deltas`` prices them together; the
   winner is applied, checked locally and undone if a rule breaks or the cost does not drop).
   Passes repeat until neither moves anything or a pass gains less than ``climb_min_gain`` of
   the cost.
2. **Large neighbourhood search** (``lns``) until the time limit: a costly machine and a few
   others (those with the most room in the resource it overloads most, or drawn among the
   cheapest and all), some processes on them and some
   away from an original machine among them; CP-SAT re-places them exactly (the current
   placement as the hint) and the result is kept only when the exact cost drops.

Every accepted change lowers the exact cost, so the answer is never costlier than the initial
assignment and every intermediate state is feasible. The sequence of changes is a function of
the seed; the wall-clock limit only decides how far along it the search gets (``max_lns``
caps the neighbourhoods instead, for repeatable runs).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from scheduler.solver.reassign.lns import returners, solve_neighbourhood
from scheduler.solver.reassign.model import Instance, IntArray
from scheduler.solver.reassign.state import State


@dataclass(frozen=True)
class SearchParams:
    """Knobs of the search (the defaults are what the benchmark runs)."""

    swap_sample: int = 1000  # processes a swap is priced against (all when fewer)
    lns_machines: int = 5  # machines per neighbourhood
    lns_free: int = 40  # processes on them that may move (a random subset when more)
    lns_returners: int = 8  # processes elsewhere that may come back to an original machine
    lns_time_s: float = 0.5  # CP-SAT limit per neighbourhood (wall and deterministic)
    climb_min_gain: float = 0.001  # hill climbing stops after a pass gaining less (share of cost)

    def __post_init__(self) -> None:
        if self.swap_sample < 1 or self.lns_machines < 2 or self.lns_free < 1:
            raise ValueError("swap_sample, lns_free >= 1 and lns_machines >= 2")
        if self.lns_returners < 0 or self.lns_time_s <= 0:
            raise ValueError("lns_returners >= 0 and lns_time_s > 0")


@dataclass(frozen=True)
class ReassignResult:
    """The best assignment found, its cost (the search's own bookkeeping: re-check it with
    ``evaluate``), the initial cost and how the search got there."""

    assignment: IntArray
    cost: int
    initial_cost: int
    seconds: float
    stats: dict[str, int] = field(default_factory=dict)


def hot_first(state: State, rng: np.random.Generator) -> IntArray:
    """Every process, those on the costliest machines first (random among equals)."""
    key = state.machine_cost[state.assign].astype(np.float64)
    return np.lexsort((rng.random(len(key)), -key))


def shift_pass(state: State, order: IntArray, deadline: float) -> int:
    """Move each process in ``order`` to its best machine where that lowers the cost."""
    moves = 0
    for k, p in enumerate(order):
        if k % 32 == 0 and time.perf_counter() > deadline:
            break
        d = state.shift_deltas(int(p))
        m = int(np.argmin(d))
        if d[m] < 0:
            state.shift(int(p), m)
            moves += 1
    return moves


def try_swap(state: State, p: int, q: int) -> bool:
    """Exchange the machines of ``p`` and ``q`` if every rule holds and the cost drops."""
    before = state.cost
    mp, mq = int(state.assign[p]), int(state.assign[q])
    state.shift(p, mq)
    state.shift(q, mp)
    if state.cost < before and state.check((mp, mq), (p, q)):
        return True
    state.shift(q, mq)
    state.shift(p, mp)
    return False


def swap_pass(
    state: State, order: IntArray, sample: int, rng: np.random.Generator, deadline: float
) -> int:
    """Swap each process in ``order`` with the best improving one of a sample (the four
    best-priced candidates are tried in turn)."""
    n = state.inst.processes
    swaps = 0
    for k, p in enumerate(order):
        if k % 8 == 0 and time.perf_counter() > deadline:
            break
        others = np.arange(n) if n <= sample else rng.choice(n, sample, replace=False)
        d = state.swap_deltas(int(p), others)
        for j in np.argsort(d)[:4]:
            if d[j] >= 0:
                break
            if try_swap(state, int(p), int(others[j])):
                swaps += 1
                break
    return swaps


def pick_machines(state: State, k: int, rng: np.random.Generator) -> IntArray:
    """A costly machine (by rank, geometric) and ``k - 1`` others. Half the time the others are
    those with the most room below the safety capacity in the resource the first machine
    overloads most (where its load can go); otherwise each is drawn at random from the cheapest
    quarter or from all, with even odds."""
    n = state.inst.machines
    k = min(k, n)
    order = np.argsort(-state.machine_cost, kind="stable")
    first = int(order[min(int(rng.geometric(0.15)) - 1, n - 1)])
    chosen = [first]
    if rng.random() < 0.5:
        excess = (state.usage[first] - state.inst.safety[first]) * state.wl
        r = int(np.argmax(excess))
        room = (state.inst.safety[:, r] - state.usage[:, r]).astype(np.float64)
        room[first] = -np.inf
        # the roomiest few, drawn at random so that repeated picks differ
        top = np.argsort(-room, kind="stable")[: max(k - 1, 3 * (k - 1))]
        picks = rng.choice(top, min(k - 1, len(top)), replace=False)
        chosen.extend(int(m) for m in picks)
        return np.asarray(chosen, dtype=np.int64)
    cheap = order[::-1][: max(1, n // 4)]
    while len(chosen) < k:
        pool = cheap if rng.random() < 0.5 else order
        m = int(pool[int(rng.integers(len(pool)))])
        if m not in chosen:
            chosen.append(m)
    return np.asarray(chosen, dtype=np.int64)


def reassign(
    inst: Instance,
    initial: IntArray,
    *,
    time_limit_s: float = 300.0,
    seed: int = 0,
    params: SearchParams | None = None,
    max_lns: int | None = None,
) -> ReassignResult:
    """Reassign the processes of ``inst`` from ``initial`` to lower the challenge's cost
    within ``time_limit_s`` seconds (wall clock); every hard rule holds throughout."""
    params = params or SearchParams()
    started = time.perf_counter()
    deadline = started + time_limit_s
    rng = np.random.default_rng(seed)
    state = State(inst, initial)
    initial_cost = state.cost
    stats = {"shifts": 0, "swaps": 0, "passes": 0, "lns": 0, "lns_improved": 0}
    while time.perf_counter() < deadline:
        before = state.cost
        moved = shift_pass(state, hot_first(state, rng), deadline)
        swapped = swap_pass(state, hot_first(state, rng), params.swap_sample, rng, deadline)
        stats["shifts"] += moved
        stats["swaps"] += swapped
        stats["passes"] += 1
        # a pass that gains little hands over to the neighbourhoods, which gain more per second
        if (not moved and not swapped) or before - state.cost < params.climb_min_gain * before:
            break
    stats["climb_cost"] = state.cost
    while time.perf_counter() < deadline - 0.02 and (max_lns is None or stats["lns"] < max_lns):
        machines = pick_machines(state, params.lns_machines, rng)
        on = np.flatnonzero(np.isin(state.assign, machines))
        if len(on) > params.lns_free:
            on = np.sort(rng.choice(on, params.lns_free, replace=False))
        away = returners(state, machines.tolist(), params.lns_returners)
        limit = min(params.lns_time_s, deadline - time.perf_counter())
        improved = solve_neighbourhood(
            state,
            machines.tolist(),
            on.tolist(),
            away,
            limit,
            params.lns_time_s,
            int(rng.integers(1 << 30)),
        )
        stats["lns"] += 1
        stats["lns_improved"] += int(improved)
    return ReassignResult(
        state.assign.copy(), state.cost, initial_cost, time.perf_counter() - started, stats
    )
