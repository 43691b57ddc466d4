"""Local search on the compiled kernel: steepest descent, then late-acceptance hill climbing.

The kernel takes move counts, not a clock: the driver runs chunks of about a fifth of a second
until the deadline, so the sequence of states is a function of the seed and only how far along
it the search gets depends on the machine. The late-acceptance history (how many moves back a
move's result is compared with) is sized from the measured speed, a small share of the moves
the budget allows (3 in 10,000), so that the walk narrows to a descent by the end of it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from scheduler.solver.reassign import annealing, kernel, relocate
from scheduler.solver.reassign.state import State

CHUNK_S = 0.2
HISTORY_SHARE = 3e-4  # history length / moves expected within the budget
MIN_HISTORY = 1000
DESCENT_SLICE = 64  # processes per descent call (the deadline is looked at between)
FIXED_CHUNK = 50_000  # moves per chunk when the moves are capped
HOT_SHARE = 0.1  # the costliest tenth of the machines: their processes are drawn half the time


class Compiled:
    """A ``State``'s counters in the kernel's layout, and the way back."""

    def __init__(self, state: State) -> None:
        self.inst = state.inst
        self.initial = state.initial
        self.md = kernel.model_arrays(state.inst, state.initial)
        self.st = kernel.state_arrays(state)

    @property
    def cost(self) -> int:
        return int(kernel.total_cost(self.md, self.st))

    @property
    def assign(self) -> Any:
        return self.st[0]

    def hot(self) -> Any:
        """The processes on the costliest machines."""
        mcost = self.st[3]
        k = max(1, int(HOT_SHARE * len(mcost)))
        top = np.argsort(-mcost, kind="stable")[:k]
        return np.flatnonzero(np.isin(self.assign, top)).astype(np.int64)

    def state(self, assignment: Any = None) -> State:
        return State(self.inst, self.initial, self.assign if assignment is None else assignment)


def descend(
    state: State, deadline: float, rng: np.random.Generator, sample: int, min_gain: float
) -> tuple[State, dict[str, int]]:
    """Steepest-descent passes (processes of the costliest machines first: a pass of shifts,
    each to its best machine, then one where a process that no shift improves is swapped with
    the best of ``sample`` processes) until a pass gains less than ``min_gain`` of the cost or
    the deadline."""
    c = Compiled(state)
    n, n_mach = state.inst.processes, state.inst.machines
    moves = passes = 0
    none = np.zeros(0, dtype=np.int64)
    while time.perf_counter() < deadline:
        before = c.cost
        key = c.st[3][c.assign].astype(np.float64)
        order = np.lexsort((rng.random(n), -key)).astype(np.int64)
        # a shift pass, then a pass that also swaps (shifts are cheap and gain most at first)
        made = 0
        for others in (none, rng.permutation(n)[:sample].astype(np.int64)):
            for k in range(0, n, DESCENT_SLICE):  # slices, so that the deadline is looked at
                if time.perf_counter() > deadline:
                    break
                targets = kernel.descent_targets(n_mach, rng)
                made += kernel.descend(c.md, c.st, order[k : k + DESCENT_SLICE], others, targets)
        moves += made
        passes += 1
        if not made or before - c.cost < min_gain * before:
            break
    return c.state(), {"descent_moves": moves, "descent_passes": passes}


def relocate_descend(
    state: State, deadline: float, rng: np.random.Generator, sample: int, min_gain: float
) -> tuple[State, dict[str, int]]:
    """Relocation passes (``relocate.relocation_pass``: processes of the costliest machines
    first, each to the machine where making room for it gains most), each followed by a
    descent, until a round gains less than ``min_gain`` of the cost or the deadline."""
    c = Compiled(state)
    hold = relocate.origin_hold(state.inst, state.initial)
    n = state.inst.processes
    made = rounds = 0
    while time.perf_counter() < deadline:
        before = c.cost
        key = c.st[3][c.assign].astype(np.float64)
        order = np.lexsort((rng.random(n), -key)).astype(np.int64)
        for k in range(0, n, DESCENT_SLICE):
            if time.perf_counter() > deadline:
                break
            made += relocate.relocation_pass(
                c.md, c.st, hold, order[k : k + DESCENT_SLICE], relocate.MAX_OUT
            )
        rounds += 1
        if time.perf_counter() < deadline:
            c = Compiled(descend(c.state(), deadline, rng, sample, min_gain)[0])
        if before - c.cost < min_gain * before:
            break
    return c.state(), {"relocations": made, "relocation_rounds": rounds}


def release(
    state: State, min_share: float, max_price: float, max_out: int = 2 * relocate.MAX_OUT
) -> tuple[State, dict[str, int]]:
    """``state`` with every stuck costly process relocated: one whose leaving would save at
    least ``min_share`` of the cost while no shift saves a tenth of that (its machine is
    full everywhere it could go) goes where making room for it (``relocate.relocate``, up to
    ``max_out`` evictees, each to its best machine) costs least, when that costs at most
    ``max_price`` of what its leaving saves. Such a relocation may cost more than it gains
    at once: it is a start for an annealing, which re-packs around the process (a2_5: its
    process 614, 10% of the cost alone on a machine with no safety capacity, fits nowhere
    else without evictions, and no annealing moved it off; relocated first, 30-s annealings
    ended 376-387 M against 400-420 M)."""
    c = Compiled(state)
    md, st = c.md, c.st
    n, n_mach = state.inst.processes, state.inst.machines
    hold = relocate.origin_hold(state.inst, state.initial)
    req, safety, wl = state.inst.requirement, state.inst.safety, state.inst.weight_load
    out = np.zeros(max_out + 2, dtype=np.int64)
    cost = c.cost
    saving = np.array(
        [st[3][c.assign[p]] - kernel.machine_cost(md, st[1], c.assign[p], -1, p) for p in range(n)]
    )
    released = 0
    for p in (int(q) for q in np.argsort(-saving, kind="stable")):
        if saving[p] < min_share * cost:
            break
        if min(kernel.shift_delta(md, st, p, m) for m in range(n_mach)) < -saving[p] // 10:
            continue  # a shift frees most of it: the annealing finds that
        m0 = int(c.assign[p])
        best_m, best_d = -1, int(max_price * saving[p]) + 1
        # where it would cost half as much even alone (no safety capacity) it stays stuck
        alone = (np.maximum(req[p] - safety, 0) * wl).sum(axis=1)
        for m in range(n_mach):
            if alone[m] >= saving[p] // 2 or not relocate.could_hold(md, hold, p, m):
                continue
            on_m = np.flatnonzero(c.assign == m).astype(np.int64)
            d = relocate.relocate(md, st, p, m, on_m, max_out, best_d - 1, out)
            if d != kernel.INF:
                best_m, best_d = m, d
                for j in range(out[-1] - 1, -1, -1):  # undo, remember
                    q = int(out[j])
                    kernel.apply_shift(md, st, q, m if q != p else m0)
        if best_m >= 0:
            on_m = np.flatnonzero(c.assign == best_m).astype(np.int64)
            relocate.relocate(md, st, p, best_m, on_m, max_out, best_d, out)
            released += 1
    return (c.state() if released else state), {"released": released}


def late_acceptance(
    state: State,
    deadline: float,
    seed: int,
    *,
    swap_share: float = 0.5,
    shift_tries: int = 1,
    chain_share: float = 0.0,
    max_moves: int | None = None,
    margin: int = 0,
) -> tuple[State, dict[str, int]]:
    """The best state late-acceptance hill climbing from ``state`` meets before ``deadline``
    (or within ``max_moves`` tried moves); never costlier than ``state``. ``margin`` is how
    far above the start the first moves may climb (the history starts there): from a local
    optimum, without it the walk could only move sideways. ``swap_share`` of the moves are
    swaps, the rest shifts to the best of ``shift_tries`` random machines."""
    c = Compiled(state)
    start_cost = c.cost
    best = c.assign.copy()
    log = np.empty(4 * state.inst.processes + 16, dtype=np.int64)
    ctl = np.array([0, 0, start_cost, 0, 0], dtype=np.int64)
    # with a move cap the history is sized from it and the chunks are fixed: repeatable; with
    # a clock, a short history until the speed is known (the first chunk loads the code)
    capped = max_moves is not None
    length = MIN_HISTORY if max_moves is None else max(MIN_HISTORY, int(HISTORY_SHARE * max_moves))
    history = np.full(length, start_cost + margin, dtype=np.int64)
    tried = taken = 0
    chunk = FIXED_CHUNK if capped else 20_000
    sized = capped
    stream = seed  # the kernel's random stream runs on across chunks
    while time.perf_counter() < deadline and (max_moves is None or tried < max_moves):
        n = chunk if max_moves is None else min(chunk, max_moves - tried)
        t = time.perf_counter()
        hot = c.hot()
        taken += kernel.search(
            c.md,
            c.st,
            best,
            log,
            ctl,
            history,
            hot,
            n,
            stream,
            swap_share,
            shift_tries,
            chain_share,
        )
        stream = -1
        tried += n
        spent = max(time.perf_counter() - t, 1e-4)
        if not sized and tried > n:
            left = max(0.0, deadline - time.perf_counter())
            length = max(MIN_HISTORY, int(HISTORY_SHARE * n / spent * left))
            history = np.full(length, c.cost + margin, dtype=np.int64)
            ctl[3] = 0
            sized = True
        if not capped:
            chunk = max(1000, min(4 * chunk, int(n * CHUNK_S / spent)))
    out = c.state(best)
    stats = {"la_tried": tried, "la_taken": taken, "la_history": len(history)}
    return (out if out.cost <= start_cost else state), stats


def typical_rise(c: Compiled, rng: np.random.Generator, samples: int = 4000) -> float:
    """The median cost rise of feasible random shifts: the scale of the annealing
    temperature (1 when no sampled shift is feasible and costlier)."""
    n, m = c.inst.processes, c.inst.machines
    rises = [
        d
        for p, to in zip(rng.integers(n, size=samples), rng.integers(m, size=samples), strict=True)
        if 0 < (d := kernel.shift_delta(c.md, c.st, int(p), int(to))) < kernel.INF
    ]
    return float(np.median(rises)) if rises else 1.0


def room_ranks(safety: Any, usage: Any, k: int) -> Any:
    """Per resource, the ``k`` machines with the most room below the safety capacity
    (resources x k, the roomiest first): where a relocation can take a process that costs in
    that resource (``annealing.room_for``)."""
    order = np.argsort(usage - safety, axis=0, kind="stable")[:k]
    return np.ascontiguousarray(order.T, dtype=np.int64)


def anneal(
    state: State,
    deadline: float,
    seed: int,
    *,
    heat: float = 3.0,
    cooling: float = 0.01,
    swap_share: float = 0.6,
    evict_share: float = 0.02,
    relocate_share: float = 0.0,
    relocate_tries: int = 0,
    best_swap_share: float = 0.0,
    max_moves: int | None = None,
) -> tuple[State, dict[str, int]]:
    """The best state simulated annealing from ``state`` meets before ``deadline`` (or within
    ``max_moves`` tried moves); never costlier than ``state``. The temperature starts at
    ``heat`` times the typical rise of a random shift and falls geometrically to ``cooling``
    of that over the time (or the moves) allowed. Processes on the costliest machines are
    drawn half the time and the cheapest quarter of the machines are targets half the time;
    ``swap_share`` of the moves are swaps, ``evict_share`` make room for a process on a full
    machine by moving some of its processes off (``kernel.try_evict``), ``relocate_share``
    relocate a process (``relocate.relocate``: room made for it), half of them to a machine
    with room in the resource it costs most in (``annealing.room_for``), ``best_swap_share``
    swap with the best-priced partner on such a machine (``annealing.best_swap``), the rest
    shifts."""
    c = Compiled(state)
    rng = np.random.default_rng(seed)
    start_cost = c.cost
    t0 = heat * typical_rise(c, rng)
    best = c.assign.copy()
    log = np.empty(4 * state.inst.processes + 16, dtype=np.int64)
    ctl = np.array([0, 0, start_cost, 0, 0], dtype=np.int64)
    capped = max_moves is not None
    chunk = FIXED_CHUNK if capped else 20_000
    started = time.perf_counter()
    budget = max(deadline - started, 1e-9)
    tried = taken = 0
    stream = seed
    quarter = max(1, state.inst.machines // 4)
    tenth = min(state.inst.machines, max(4, state.inst.machines // 10))  # room_ranks' length
    hold = relocate.origin_hold(state.inst, state.initial)
    while time.perf_counter() < deadline and (max_moves is None or tried < max_moves):
        n = chunk if max_moves is None else min(chunk, max_moves - tried)
        done = tried / max_moves if max_moves else (time.perf_counter() - started) / budget
        temp = t0 * cooling ** min(done, 1.0)
        roomy = np.argsort(c.st[3], kind="stable")[:quarter].astype(np.int64)
        room = room_ranks(state.inst.safety, c.st[1], tenth)
        t = time.perf_counter()
        taken += annealing.anneal(
            c.md,
            c.st,
            best,
            log,
            ctl,
            c.hot(),
            roomy,
            n,
            stream,
            temp,
            swap_share,
            1,
            evict_share,
            hold,
            relocate_share,
            relocate_tries,
            room,
            best_swap_share,
        )
        stream = -1
        tried += n
        if not capped:
            spent = max(time.perf_counter() - t, 1e-4)
            chunk = max(1000, min(4 * chunk, int(n * CHUNK_S / spent)))
    out = c.state(best)
    stats = {"anneal_tried": tried, "anneal_taken": taken, "anneal_t0": int(t0)}
    return (out if out.cost <= start_cost else state), stats
