"""Relocation with evictions (compiled, numba): a process goes to a machine where it does not
fit once some of that machine's processes have moved out, each to its best machine.

This is the move the descent and late acceptance lack when the machines are full: a big
process on a costly machine could go to a machine with room below its safety capacity, if
that machine's processes made room. With transient resources the room a machine offers to
processes from elsewhere is its capacity less what its original processes hold (they hold it
even once gone), so only processes that are not originally there free any of it: the process
to evict is chosen by how much of the shortfall it frees, counting that rule, and may well go
home (which gives back what it held there). Every step is an exact, checked shift
(``kernel.shift_delta``), so every state on the way holds every hard rule; a relocation that
costs more than its limit is undone step by step.

``relocate`` is one such move; ``relocation_pass`` tries it for the processes of the costliest
machines, each towards every machine that could hold it, and keeps each best improving one
(a descent over this neighbourhood).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scheduler.solver.jit import jit
from scheduler.solver.reassign import kernel
from scheduler.solver.reassign.model import Instance, IntArray

MAX_OUT = 6  # processes moved off the target machine at most
CANDIDATES = 3  # evictees tried (best scores first) before the relocation gives up


def origin_hold(inst: Instance, initial: IntArray) -> IntArray:
    """What the original processes of each machine hold there for good (machines x
    resources; only the transient resources count, the rest is 0)."""
    hold = np.zeros((inst.machines, inst.resources), dtype=np.int64)
    np.add.at(hold, np.asarray(initial, dtype=np.int64), inst.requirement)
    hold[:, ~inst.transient] = 0
    return hold


@jit
def could_hold(md: Any, hold: Any, p: int, m: int) -> bool:
    """Whether ``m`` could take ``p`` once emptied of what it may give up: its capacity, and
    for a transient resource what its original processes keep holding (``origin_hold``)."""
    req, init, cap, trm = md[0], md[3], md[4], md[10]
    for r in range(req.shape[1]):
        if req[p, r] > cap[m, r]:
            return False
        if trm[r] and m != init[p] and req[p, r] + hold[m, r] > cap[m, r]:
            return False
    return True


@jit
def _evictee(md: Any, st: Any, p: int, m: int, members: Any, skip: Any, n_skip: int) -> int:
    """The process of ``m`` (among ``members``, not in ``skip[:n_skip]``) whose leaving frees
    most of what ``p`` lacks there (shares of each shortfall, summed); a process of ``p``'s
    service comes first (the conflict rule); -1 when none frees anything."""
    req, svc, init, cap, trm = md[0], md[2], md[3], md[4], md[10]
    assign, usage, trans = st[0], st[1], st[2]
    n_res = usage.shape[1]
    best, best_score = -1, 0.0
    for i in range(members.shape[0]):
        q = members[i]
        if assign[q] != m or q == p:
            continue
        taken = False
        for k in range(n_skip):
            if skip[k] == q:
                taken = True
        if taken:
            continue
        if svc[q] == svc[p]:
            return q
        score = 0.0
        for r in range(n_res):
            lack = usage[m, r] + req[p, r] - cap[m, r]
            if lack > 0:
                score += min(lack, req[q, r]) / lack
            if trm[r] and m != init[p] and init[q] != m:
                lack_t = trans[m, r] + req[p, r] - cap[m, r]
                if lack_t > 0:
                    score += min(lack_t, req[q, r]) / lack_t
        if score > best_score:
            best, best_score = q, score
    return best


@jit
def _best_machine(md: Any, st: Any, q: int, avoid: int, tries: int) -> tuple[int, int]:
    """The machine (not ``avoid``) where moving ``q`` costs least, and that cost (``INF``):
    among all machines, or (``tries`` > 0) among ``q``'s original machine and ``tries``
    random ones (home is where an evictee most often fits: it holds its transient resources
    there already)."""
    n_mach = md[4].shape[0]
    best_m, best_d = -1, kernel.INF
    for i in range(n_mach if tries <= 0 else tries + 1):
        if tries <= 0:
            m2 = i
        elif i == 0:
            m2 = md[3][q]
        else:
            m2 = np.random.randint(n_mach)
        if m2 != avoid:
            d = kernel.shift_delta(md, st, q, m2)
            if d < best_d:
                best_m, best_d = m2, d
    return best_m, best_d


@jit
def seed_kernel(seed: int) -> None:
    """Seed the compiled code's random stream (the sampled evictee destinations draw on it)."""
    np.random.seed(seed)


@jit
def relocation_floor(md: Any, st: Any, p: int, m: int) -> int:
    """About the least the cost can change by moving ``p`` to ``m`` whatever leaves ``m``
    first: what its machine saves, its move costs, and at best ``m``'s balance cost gone and
    one step of the service-move cost. Not a strict bound (an evictee may land on ``p``'s
    machine, and later evictions may gain): the relocations it prunes are rarely the best."""
    pmc, init, mmc, w = md[1], md[3], md[8], md[13]
    assign, mcost = st[0], st[3]
    m0, o = assign[p], init[p]
    bound = kernel.machine_cost(md, st[1], m0, -1, p) - mcost[m0]
    change = (1 if m != o else 0) - (1 if m0 != o else 0)
    bound += w[0] * pmc[p] * change + w[2] * (mmc[o, m] - mmc[o, m0]) - w[1]
    if md[11].shape[0]:  # adding a process can lower a balance cost
        bound -= mcost[m]
    return bound


@jit
def relocate(
    md: Any,
    st: Any,
    p: int,
    m: int,
    members: Any,
    max_out: int,
    limit: int,
    out: Any,
    tries: int = 0,
) -> int:
    """Move ``p`` to ``m``, first moving processes of ``m`` (``members``: those on it) out,
    each to its best machine (of all, or of its home and ``tries`` random ones:
    ``_best_machine``), while ``p`` cannot go there, at most ``max_out`` of them. Kept
    when the total change is at most ``limit``: the moved processes (evictees first, ``p``
    last) in ``out[:k]``, k in ``out[-1]``. Else undone. The change, or ``kernel.INF``. The
    evictions stop early once even the best end (``relocation_floor``) would exceed the limit."""
    assign = st[0]
    m0 = assign[p]
    if m == m0:
        return kernel.INF
    floor = relocation_floor(md, st, p, m)
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
        if k >= max_out or total + floor > limit:
            break  # no room left, or no way to end within the limit
        skip = np.full(CANDIDATES, -1, dtype=np.int64)  # evictees with nowhere to go
        moved = False
        for c in range(CANDIDATES):  # the best evictee that can go somewhere
            q = _evictee(md, st, p, m, members, skip, c)
            if q < 0:
                break
            to, dq = _best_machine(md, st, q, m, tries)
            if to < 0:
                skip[c] = q
                continue
            kernel.apply_shift(md, st, q, to)
            total += dq
            out[k] = q
            k += 1
            moved = True
            break
        if not moved:
            break
    for j in range(k - 1, -1, -1):  # undo: back through states that held every rule
        kernel.apply_shift(md, st, out[j], m)
    return kernel.INF


@jit
def _by_machine(assign: Any, n_mach: int) -> tuple[Any, Any]:
    """The processes of each machine: machine ``m``'s are ``items[first[m]:first[m + 1]]``."""
    first = np.zeros(n_mach + 1, dtype=np.int64)
    for p in range(assign.shape[0]):
        first[assign[p] + 1] += 1
    for m in range(n_mach):
        first[m + 1] += first[m]
    fill = first[:-1].copy()
    items = np.empty(assign.shape[0], dtype=np.int64)
    for p in range(assign.shape[0]):
        items[fill[assign[p]]] = p
        fill[assign[p]] += 1
    return first, items


@jit
def relocation_pass(md: Any, st: Any, hold: Any, order: Any, max_out: int) -> int:
    """For each process of ``order`` whose leaving would lower its machine's cost: the best
    improving relocation (``relocate``) to any machine that could hold it, applied. Returns
    the relocations made."""
    assign = st[0]
    n_mach = md[4].shape[0]
    out = np.zeros(max_out + 2, dtype=np.int64)
    first, items = _by_machine(assign, n_mach)
    made = 0
    for i in range(order.shape[0]):
        p = order[i]
        m0 = assign[p]
        if kernel.machine_cost(md, st[1], m0, -1, p) >= st[3][m0]:
            continue  # its machine gains nothing from its leaving
        best_m, best_d = -1, 0
        for m in range(n_mach):
            if (
                m == m0
                or not could_hold(md, hold, p, m)
                or relocation_floor(md, st, p, m) >= best_d
            ):
                continue
            on_m = items[first[m] : first[m + 1]]
            d = relocate(md, st, p, m, on_m, max_out, best_d - 1, out)
            if d < best_d:
                best_m, best_d = m, d
                for j in range(out[out.shape[0] - 1] - 1, -1, -1):  # undo, remember
                    q = out[j]
                    back = m0 if q == p else m
                    kernel.apply_shift(md, st, q, back)
        if best_m >= 0:
            on_m = items[first[best_m] : first[best_m + 1]]
            relocate(md, st, p, best_m, on_m, max_out, best_d, out)
            first, items = _by_machine(assign, n_mach)
            made += 1
    return made
