"""Simulated annealing on the compiled kernel (numba), with an eviction move.

``anneal`` runs a given number of moves at one temperature: shifts, swaps and evictions
(``try_evict``: processes moved off a full machine, each by an exact, checked shift, until a
process fits there), each taken with the Metropolis probability. The threshold is drawn
before the move is priced, so a swap or an eviction over it is undone at once. The state and
the best-state log are ``kernel``'s.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scheduler.solver.jit import jit
from scheduler.solver.reassign import kernel, relocate

EVICT_MAX = 8  # processes moved off a machine to make room for one
EVICT_TRIES = 16  # machines each of them is priced on
# share of the relocations aimed at a machine with room where the process costs (``room_for``):
# 30-s annealings from the relocation rounds' optimum, seeds 1-3, a2_2 824 / 850 / 861 M and
# a2_3 1,344 / 1,313 / 1,362 M, against 833 / 861 / 854 M and 1,351 / 1,378 / 1,364 M at random
RELOCATE_AIMED = 0.5


@jit
def _shortfall(md: Any, st: Any, p: int, m: int) -> bool:
    """Whether ``p`` lacks capacity (or transient capacity) on ``m``."""
    req, init, cap, trm = md[0], md[3], md[4], md[10]
    usage, trans = st[1], st[2]
    for r in range(usage.shape[1]):
        if usage[m, r] + req[p, r] > cap[m, r]:
            return True
        if trm[r] and m != init[p] and trans[m, r] + req[p, r] > cap[m, r]:
            return True
    return False


@jit
def try_evict(
    md: Any, st: Any, p: int, m: int, max_out: int, tries: int, limit: int, out: Any
) -> int:
    """Make room for ``p`` on ``m`` and move it there: while ``p`` lacks capacity on ``m``, a
    process of ``m`` (the one of a few drawn there that frees most of what ``p`` lacks) goes to
    the best of ``tries`` random machines; at most ``max_out`` of them. Each step is a shift
    priced and checked exactly, so every state on the way is feasible. Kept when the total
    change is at most ``limit`` (the moved processes, ``p`` last, in ``out[:k]``, k
    returned through ``out[-1]``); else undone. The change, or ``kernel.INF``."""
    req, cap = md[0], md[4]
    assign, usage = st[0], st[1]
    m0 = assign[p]
    if m == m0:
        return kernel.INF
    n_proc = assign.shape[0]
    n_mach = cap.shape[0]
    total = 0
    k = 0
    while True:
        d = kernel.shift_delta(md, st, p, m)
        if d != kernel.INF:
            if total + d <= limit:
                kernel.apply_shift(md, st, p, m)
                out[k] = p
                out[out.shape[0] - 1] = k + 1
                return total + d
            break
        if k >= max_out or not _shortfall(md, st, p, m):
            break
        q, gain = -1, -1
        for _ in range(3 * (n_proc // n_mach) + 8):  # draw processes until three are on m
            c = np.random.randint(n_proc)
            if assign[c] != m:
                continue
            g = 0
            for r in range(usage.shape[1]):  # what it frees of what p lacks
                lack = usage[m, r] + req[p, r] - cap[m, r]
                if lack > 0:
                    g += min(lack, req[c, r])
            if g > gain:
                q, gain = c, g
            if gain >= 0 and q >= 0 and _ >= n_proc // n_mach:
                break
        if q < 0:
            break
        best_m, best_d = -1, kernel.INF
        for _ in range(tries):
            m2 = np.random.randint(n_mach)
            if m2 != m:
                d2 = kernel.shift_delta(md, st, q, m2)
                if d2 < best_d:
                    best_m, best_d = m2, d2
        if best_m < 0:
            break
        kernel.apply_shift(md, st, q, best_m)
        total += best_d
        out[k] = q
        k += 1
    for j in range(k - 1, -1, -1):  # undo: back to states that held every rule
        kernel.apply_shift(md, st, out[j], m)
    return kernel.INF


@jit
def room_for(md: Any, st: Any, p: int, roomy: Any, room: Any) -> int:
    """A machine to relocate ``p`` to: a random one of ``room[r]`` (the machines with the
    most room below the safety capacity in resource ``r``, ``room_ranks``) for the resource
    ``r`` in which ``p`` adds most to its machine's load cost; of ``roomy`` when it adds
    nothing."""
    req, saf, wl = md[0], md[5], md[9]
    usage = st[1]
    m0 = st[0][p]
    best_r, best = -1, 0
    for r in range(usage.shape[1]):
        over = min(usage[m0, r] - saf[m0, r], req[p, r]) * wl[r]
        if over > best:
            best_r, best = r, over
    if best_r < 0:
        return roomy[np.random.randint(len(roomy))]
    return room[best_r, np.random.randint(room.shape[1])]


@jit
def best_swap(md: Any, st: Any, p: int, m: int, limit: int) -> tuple[int, int]:
    """Exchange ``p`` with the process of ``m`` whose exchange is priced lowest
    (``kernel.swap_estimate``, among those within capacity: ``kernel.swap_fits``), then
    checked and priced exactly by ``kernel.try_swap`` against ``limit``: a swap aimed at what
    fits where ``p`` goes, where a random partner is on another machine or a poor fit most of
    the time. The change (or ``kernel.INF``, nothing applied) and the partner."""
    assign = st[0]
    m1 = assign[p]
    if m1 == m:
        return kernel.INF, -1
    best_q, best = -1, kernel.INF
    for q in range(assign.shape[0]):
        if assign[q] == m and kernel.swap_fits(md, st, p, q, m1, m):
            est = kernel.swap_estimate(md, st, p, q, m1, m)
            if est < best:
                best_q, best = q, est
    if best_q < 0:
        return kernel.INF, -1
    return kernel.try_swap(md, st, p, best_q, limit), best_q


@jit
def anneal(
    md: Any,
    st: Any,
    best: Any,
    log: Any,
    ctl: Any,
    hot: Any,
    roomy: Any,
    iters: int,
    seed: int,
    temp: float,
    swap_share: float,
    shift_tries: int,
    evict_share: float,
    hold: Any,
    relocate_share: float,
    relocate_tries: int,
    room: Any,
    best_swap_share: float,
) -> int:
    """``iters`` moves of simulated annealing at temperature ``temp``: a move of cost change
    ``d`` is taken with probability ``min(1, exp(-d / temp))`` (the threshold is drawn first,
    so that a swap is undone at once when it exceeds it). The moving process is drawn from
    ``hot`` half the time (else from all), a shift's machine from ``roomy`` half the time
    (else from all); ``swap_share`` of the moves are swaps with a random process;
    ``relocate_share`` relocations, their machine aimed by ``room`` (``room_for``)
    ``RELOCATE_AIMED`` of the time, else drawn from all; ``best_swap_share`` swaps with the
    best-priced partner on a machine aimed the same way (``best_swap``). ``best`` and
    ``ctl`` as for ``search``. Returns the moves taken."""
    if seed >= 0:
        np.random.seed(seed)
    assign = st[0]
    n_proc = assign.shape[0]
    n_mach = md[4].shape[0]
    cur = kernel.total_cost(md, st)
    taken = 0
    buf = np.zeros(max(EVICT_MAX, relocate.MAX_OUT) + 2, dtype=np.int64)
    on_m = np.empty(n_proc, dtype=np.int64)
    for _ in range(iters):
        u = 1.0 - np.random.random()
        t = -temp * np.log(u)
        limit = kernel.INF - 1 if t > 1e18 else int(t)
        if len(hot) and np.random.random() < 0.5:
            p = hot[np.random.randint(len(hot))]
        else:
            p = np.random.randint(n_proc)
        kind = np.random.random()
        if kind < relocate_share:
            if len(roomy) and np.random.random() < RELOCATE_AIMED:
                m = room_for(md, st, p, roomy, room)
            else:
                m = np.random.randint(n_mach)
            if (
                not relocate.could_hold(md, hold, p, m)
                or relocate.relocation_floor(md, st, p, m) > limit
            ):
                continue  # (before the scan of the processes: most draws end here)
            k = 0
            for q in range(n_proc):  # the processes on m
                if assign[q] == m:
                    on_m[k] = q
                    k += 1
            d = relocate.relocate(
                md, st, p, m, on_m[:k], relocate.MAX_OUT, limit, buf, relocate_tries
            )
            if d == kernel.INF:
                continue
            for j in range(buf[buf.shape[0] - 1]):
                kernel.keep(st, best, log, ctl, buf[j])
        elif kind < relocate_share + evict_share:
            if len(roomy) and np.random.random() < 0.5:
                m = roomy[np.random.randint(len(roomy))]
            else:
                m = np.random.randint(n_mach)
            d = try_evict(md, st, p, m, EVICT_MAX, EVICT_TRIES, limit, buf)
            if d == kernel.INF:
                continue
            for j in range(buf[buf.shape[0] - 1]):
                kernel.keep(st, best, log, ctl, buf[j])
        elif kind < relocate_share + evict_share + best_swap_share:
            if len(roomy) and np.random.random() < RELOCATE_AIMED:
                m = room_for(md, st, p, roomy, room)
            else:
                m = np.random.randint(n_mach)
            d, q = best_swap(md, st, p, m, limit)
            if d == kernel.INF:
                continue
            kernel.keep(st, best, log, ctl, p)
            kernel.keep(st, best, log, ctl, q)
        elif kind < relocate_share + evict_share + best_swap_share + swap_share:
            q = np.random.randint(n_proc)
            d = kernel.try_swap(md, st, p, q, limit)
            if d == kernel.INF:
                continue
            kernel.keep(st, best, log, ctl, p)
            kernel.keep(st, best, log, ctl, q)
        else:
            m, d = -1, kernel.INF
            for _ in range(shift_tries):  # the best of a few machines
                if len(roomy) and np.random.random() < 0.5:
                    m2 = roomy[np.random.randint(len(roomy))]
                else:
                    m2 = np.random.randint(n_mach)
                d2 = kernel.shift_delta(md, st, p, m2)
                if d2 < d:
                    m, d = m2, d2
            if d > limit:
                continue
            kernel.apply_shift(md, st, p, m)
            kernel.keep(st, best, log, ctl, p)
        taken += 1
        cur += d
        if cur < ctl[2]:
            kernel.new_best(st, best, log, ctl, cur)
    return taken
