"""The reassignment engine: annealing and descent, late acceptance, then large neighbourhood
search.

0. **Simulated annealing** (``local.anneal``, compiled: ``annealing``) from the initial
   assignment for ``anneal_share`` of the time limit, where ``anneals`` says so (small
   instances with no transient resource): shifts, swaps with a random partner or (a
   ``best_swap_share`` of every annealing's moves) with the best-priced one on a machine with
   room (``annealing.best_swap``) and evictions, the temperature falling geometrically from a
   multiple of the typical rise of a random shift. Before it, a
   process that holds a large share of the cost and that no shift moves off is relocated
   (``local.release``: room made for it elsewhere), even at a price.
1. **Steepest descent** (``local.descend``, compiled: ``kernel``) from the initial assignment
   too: the processes of the costliest machines first, each moved to its best machine when
   that lowers the cost, else swapped with the best improving one of a sample; passes repeat
   until one gains less than ``climb_min_gain`` of the cost (or ``climb_share`` of the time
   left is spent). The cheaper of the two states goes on.
1b. **Relocation rounds** (``local.relocate_descend``, compiled: ``relocate``) on instances
   with a transient resource, once the descent has converged: a process of a costly machine
   goes to the machine where making room for it (its processes out, each to its best machine)
   gains most; a descent after each round.
2. On instances of at most ``settle_max_processes`` that did not anneal first, a warm
   **annealing with relocations** among its moves (``settle_heat``, ``settle_share``,
   ``settle_relocate_share``; half of them aimed at a machine with room in the resource the
   process costs most in: ``annealing.room_for``); else
   **late-acceptance hill climbing** (``local.late_acceptance``) for ``la_share`` of the time
   left: millions of random shifts and swaps, exactly priced, each taken when the cost after
   it is at most the current one or the one a history length ago (the history starts
   ``la_margin`` of the descent's gain above, so the walk can leave the descent's optimum).
   It keeps the best state it meets.
3. **Large neighbourhood search** (``lns``) until the time limit: a costly machine and a few
   others (those with the most room in the resource it overloads most, or drawn among the
   cheapest and all), some processes on them and some away from an original machine among
   them; CP-SAT re-places them exactly (the current placement as the hint) and the result is
   kept only when the exact cost drops.

Every state is feasible and the best one is returned, so the answer is never costlier than the
initial assignment. Under a wall-clock limit the late-acceptance history is sized from the
measured speed and the annealing's temperature follows the clock, so runs on different machines
differ; ``max_la`` (``max_anneal``) and ``max_lns`` cap the moves and the neighbourhoods
instead, which makes the states a function of the seed alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from scheduler.solver.reassign.lns import returners, solve_neighbourhood
from scheduler.solver.reassign.local import (
    anneal,
    descend,
    late_acceptance,
    release,
    relocate_descend,
)
from scheduler.solver.reassign.model import Instance, IntArray
from scheduler.solver.reassign.state import State


@dataclass(frozen=True)
class SearchParams:
    """Knobs of the search (the defaults are what the benchmark runs)."""

    swap_sample: int = 300  # processes a descent swap is priced against (all when fewer)
    lns_machines: int = 5  # machines per neighbourhood
    lns_free: int = 40  # processes on them that may move (a random subset when more)
    lns_returners: int = 8  # processes elsewhere that may come back to an original machine
    lns_time_s: float = 0.5  # CP-SAT limit per neighbourhood (wall and deterministic)
    climb_min_gain: float = 0.001  # the descent stops after a pass gaining less (share of cost)
    climb_share: float = 0.7  # and by this share of the time limit at the latest
    la_share: float = 0.4  # share of the time left after the descent for late acceptance
    la_margin: float = 0.05  # its first uphill allowance, as a share of what the descent gained
    la_chains: float = 0.0  # share of its moves that are ejection chains
    anneal_share: float = 0.45  # share of the time limit for annealing from the initial state,
    # only on instances this small and with no transient resource (``anneals``)
    anneal_max_processes: int = 2000
    relocate: bool = True  # relocation rounds (room made for a process) after the descent
    relocate_min_gain: float = 1e-4  # they stop after a round gaining less (share of cost)
    relocate_time_share: float = 0.9  # or by this share of the time left at the latest
    relocate_max_machines: int = 1000  # and only up to this many machines: a relocation pass
    # looks at the deadline every 64 processes, which took 58 s at 5,000 machines (a 2 s limit)
    settle_heat: float = 10.0  # on instances too small for late acceptance's (and no first
    # annealing): the heat of an annealing with relocations in its place (10 against 1, 120 s:
    # a2_2 4.48 against 5.89, a2_3 5.91 against 6.80; a1_2 and a1_4 the same or better)
    settle_share: float = 0.8  # its share of the time left (late acceptance's: la_share)
    settle_cooling: float = 0.01  # its last temperature, as a share of its first
    settle_max_processes: int = 2000
    relocate_share: float = 0.05  # share of the moves of a second annealing that relocate
    settle_relocate_share: float = 0.3  # and of the warm annealing's (half of them aimed:
    # ``annealing.room_for``; 30-s annealings from the relocation rounds' optimum, seeds 1-3:
    # a2_2 826 / 832 / 818 M and a2_3 1,275 / 1,279 / 1,339 M, against 824 / 850 / 861 M and
    # 1,344 / 1,313 / 1,362 M at 0.05 and 834 / 863 / 812 M and 1,329 / 1,295 / 1,336 M at
    # 0.5; a2_5's second annealing, 0.3 against 0.05: 383.5 / 383.7 M against 383.3 / 383.0 M)
    relocate_tries: int = 16  # with a transient resource: machines (and home) each evictee
    # of theirs is priced on (0: all, as without; 16 against all, 10 s from the relocation
    # rounds' optimum at heat 10: a2_2 832-853 M against 853-879 M, a2_3 1,312-1,373 M
    # against 1,402-1,406 M, twice the moves a second)
    release_share: float = 0.05  # before the first annealing, a process whose leaving would
    # save this share of the cost and that no shift moves off is relocated (``local.release``)
    release_price: float = 0.25  # when that costs at most this share of what leaving saves
    best_swap_share: float = 0.15  # share of every annealing's moves that swap with the
    # best-priced partner on an aimed machine (``annealing.best_swap``; 120-s searches, seeds
    # 0 / 1 / 2: a2_5 366.7 / 363.2 / 368.5 M against 376.4 / 384.6 / 363.7 M without, a2_2
    # 821.9 / 835.5 M against 828.1 / 832.0 M, seeds 0 / 1)
    reheat: float = 0.3  # when its state is the better start: the heat of a second annealing
    # in late acceptance's place (0: late acceptance all the same)

    def __post_init__(self) -> None:
        if self.swap_sample < 1 or self.lns_machines < 2 or self.lns_free < 1:
            raise ValueError("swap_sample, lns_free >= 1 and lns_machines >= 2")
        if self.lns_returners < 0 or self.lns_time_s <= 0:
            raise ValueError("lns_returners >= 0 and lns_time_s > 0")
        if (
            not 0 <= self.climb_share <= 1
            or not 0 <= self.la_share <= 1
            or self.la_margin < 0
            or not 0 <= self.la_chains <= 1
            or not 0 <= self.anneal_share <= 1
            or self.reheat < 0
            or self.release_share < 0
            or self.release_price < 0
            or not 0 <= self.relocate_share <= 1
            or not 0 <= self.settle_relocate_share <= 1
            or not 0 <= self.best_swap_share <= 1
        ):
            raise ValueError(
                "climb_share, la_share, la_chains, anneal_share, relocate_share,"
                " settle_relocate_share and best_swap_share in [0, 1]; la_margin, reheat,"
                " release_share and release_price >= 0"
            )


@dataclass(frozen=True)
class ReassignResult:
    """The best assignment found, its cost (the search's own bookkeeping: re-check it with
    ``evaluate``), the initial cost and how the search got there."""

    assignment: IntArray
    cost: int
    initial_cost: int
    seconds: float
    stats: dict[str, int] = field(default_factory=dict)


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


def anneals(inst: Instance, params: SearchParams) -> bool:
    """Whether the search anneals from the initial assignment before the descent. Not on
    many processes (set B: the moves a limit allows are too few per process, and the descent's
    start was the better one in every trial) nor with transient resources (a process moved
    off its original machine still holds them there, and the hot random walk of the first
    moves fills the machines with what it holds: on a2_2 the descent's start was better)."""
    return (
        params.anneal_share > 0
        and inst.processes <= params.anneal_max_processes
        and not inst.transient.any()
    )


def reassign(
    inst: Instance,
    initial: IntArray,
    *,
    time_limit_s: float = 300.0,
    seed: int = 0,
    params: SearchParams | None = None,
    max_lns: int | None = None,
    max_la: int | None = None,
    max_anneal: int | None = None,
) -> ReassignResult:
    """Reassign the processes of ``inst`` from ``initial`` to lower the challenge's cost
    within ``time_limit_s`` seconds (wall clock); every hard rule holds throughout."""
    params = params or SearchParams()
    started = time.perf_counter()
    deadline = started + time_limit_s
    rng = np.random.default_rng(seed)
    state = State(inst, initial)
    initial_cost = state.cost
    stats = {"lns": 0, "lns_improved": 0}
    start = state
    if anneals(inst, params):
        if params.release_share > 0:
            state, release_stats = release(start, params.release_share, params.release_price)
            stats.update(release_stats)
        state, anneal_stats = anneal(
            state,
            started + params.anneal_share * time_limit_s,
            int(rng.integers(1 << 30)),
            best_swap_share=params.best_swap_share,
            max_moves=max_anneal if max_anneal is not None else max_la,
        )
        stats.update(anneal_stats)
        stats["anneal_cost"] = state.cost
    # the descent from the initial state too: on some instances its optimum is the better start
    left = deadline - time.perf_counter()
    climb_deadline = time.perf_counter() + params.climb_share * left
    climbed, climb_stats = descend(
        start, climb_deadline, rng, params.swap_sample, params.climb_min_gain
    )
    stats.update(climb_stats)
    stats["climb_cost"] = climbed.cost
    annealed = state is not start and state.cost <= climbed.cost
    if not annealed:
        state = climbed
    # relocations cost a scan of the machines per eviction: only once the descent has
    # converged (on the largest instances, b_09, its cheaper moves were still gaining), and
    # only with transient resources, where what a moved process holds at its origin blocks
    # the shifts (without, late acceptance gained several times more: b_02)
    if (
        params.relocate
        and inst.transient.any()
        and inst.machines <= params.relocate_max_machines
        and time.perf_counter() < climb_deadline
    ):
        left = deadline - time.perf_counter()
        state, reloc_stats = relocate_descend(
            state,
            time.perf_counter() + params.relocate_time_share * left,
            rng,
            params.swap_sample,
            params.relocate_min_gain,
        )
        stats.update(reloc_stats)
        stats["relocate_cost"] = state.cost
    la_seed = int(rng.integers(1 << 30))
    small = inst.processes <= params.settle_max_processes
    share = params.settle_share if small and params.settle_heat > 0 else params.la_share
    la_deadline = time.perf_counter() + share * (deadline - time.perf_counter())
    # an annealing in late acceptance's place: after the annealing's optimum (late acceptance
    # gained nothing there in trials), or on small instances from the relocations' optimum (a
    # warm annealing with relocations gained several times what it did: a2_2, 20 s trials)
    again: tuple[float, str, str] | None = None
    if params.la_share > 0 and annealed and params.reheat > 0:
        again = (params.reheat, "re", "reanneal_cost")
    elif small and params.settle_heat > 0:
        again = (params.settle_heat, "settle_", "settle_cost")
    if again is not None:
        heat, prefix, cost_key = again
        state, again_stats = anneal(
            state,
            la_deadline,
            la_seed,
            heat=heat,
            cooling=params.settle_cooling,
            relocate_share=(
                params.settle_relocate_share if prefix == "settle_" else params.relocate_share
            ),
            # home is where an evictee most often fits only when it holds transient
            # resources there (a2_5, none: its later annealing gained less in a trial)
            relocate_tries=params.relocate_tries if inst.transient.any() else 0,
            best_swap_share=params.best_swap_share,
            max_moves=max_la,
        )
        stats.update({f"{prefix}{k}": v for k, v in again_stats.items()})
        stats[cost_key] = state.cost
    elif params.la_share > 0:
        state, la_stats = late_acceptance(
            state,
            la_deadline,
            la_seed,
            max_moves=max_la,
            margin=int(params.la_margin * (initial_cost - state.cost)),
            chain_share=params.la_chains,
        )
        stats.update(la_stats)
        stats["la_cost"] = state.cost
    while time.perf_counter() < deadline - 0.02 and (max_lns is None or stats["lns"] < max_lns):
        machines = pick_machines(state, params.lns_machines, rng)
        on = np.flatnonzero(np.isin(state.assign, machines))
        if len(on) > params.lns_free:
            on = np.sort(rng.choice(on, params.lns_free, replace=False))
        away = returners(state, machines.tolist(), params.lns_returners)
        limit = deadline - time.perf_counter()
        # capped (max_lns), only the deterministic limit ends a neighbourhood: under load the
        # wall limit came first and the same seed gave another answer
        if max_lns is None:
            limit = min(params.lns_time_s, limit)
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
