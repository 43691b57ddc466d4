"""The compiled inner loop of the reassignment search (numba): exact move pricing and a
late-acceptance local search over shifts, swaps and ejection chains.

The model is a tuple of ``int64`` arrays (``model_arrays``) and the state a tuple of the
same counters ``State`` keeps (``state_arrays``): usage, transient usage, the cost of each
machine, per service its processes per location and per neighbourhood and its moved count,
the histogram of moved counts and the scalar sums. ``shift_delta`` prices moving one process in
O(R + B + the service's size + its dependencies) with every hard rule checked; a swap or a
chain is applied raw, checked on the machines and services it touched (``check_local``) and
undone when it breaks a rule or is not accepted. ``search`` runs a given number of moves of
late-acceptance hill climbing and keeps the best assignment it meets (a log of the processes
changed since the last best makes that O(changes), not O(P)).

Costs are exact integers throughout: the Python side (``State``) and the independent
evaluator agree with them to the unit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scheduler.solver.jit import jit
from scheduler.solver.reassign.model import Instance, IntArray

INF = 1 << 62  # an infeasible move's price (an int64 constant to numba)
CHAIN_TRIES = 4  # machines an ejected process is priced on
# machines a descent step prices a process on: all up to this many (every instance of sets A
# and B, b_09 the most), else a random sample of this many. A scan of all 5,000 machines of
# an instance of b_10's size took 80 s for one pass over its 50,000 processes.
DESCENT_MACHINES = 1000


def descent_targets(n_mach: int, rng: np.random.Generator) -> IntArray:
    """The machines a descent step prices its processes on (``DESCENT_MACHINES``): all of
    them, or a fresh random sample (sorted: the scan reads the arrays in order)."""
    if n_mach <= DESCENT_MACHINES:
        return np.arange(n_mach, dtype=np.int64)
    return np.sort(rng.choice(n_mach, DESCENT_MACHINES, replace=False)).astype(np.int64)


def model_arrays(inst: Instance, initial: IntArray) -> tuple[Any, ...]:
    """The instance as the kernel reads it (service members, dependencies and their reverse
    as CSR arrays)."""

    def csr(groups: list[IntArray]) -> tuple[IntArray, IntArray]:
        start = np.zeros(len(groups) + 1, dtype=np.int64)
        start[1:] = np.cumsum([len(g) for g in groups])
        flat = np.concatenate(groups).astype(np.int64) if groups else np.zeros(0, np.int64)
        return start, flat

    svc = inst.service.astype(np.int64)
    order = np.argsort(svc, kind="stable")
    bounds = np.searchsorted(svc[order], np.arange(inst.services + 1))
    members = [order[bounds[s] : bounds[s + 1]] for s in range(inst.services)]
    deps = [np.asarray(d, dtype=np.int64) for d in inst.dependencies]
    rdeps: list[list[int]] = [[] for _ in range(inst.services)]
    for sa, ds in enumerate(inst.dependencies):
        for sb in ds:
            rdeps[int(sb)].append(sa)
    ms, mem = csr(members)
    ds_, dep = csr(deps)
    rs, rdep = csr([np.asarray(r, dtype=np.int64) for r in rdeps])
    i64 = np.int64
    return (
        np.ascontiguousarray(inst.requirement, dtype=i64),
        inst.process_move_cost.astype(i64),
        svc,
        np.asarray(initial, dtype=i64).copy(),
        np.ascontiguousarray(inst.capacity, dtype=i64),
        np.ascontiguousarray(inst.safety, dtype=i64),
        inst.location.astype(i64),
        inst.neighborhood.astype(i64),
        np.ascontiguousarray(inst.machine_move_cost, dtype=i64),
        inst.weight_load.astype(i64),
        inst.transient.astype(i64),
        np.ascontiguousarray(inst.balance, dtype=i64).reshape(-1, 3),
        inst.weight_balance.astype(i64),
        np.array(
            [inst.weight_process_move, inst.weight_service_move, inst.weight_machine_move], i64
        ),
        inst.spread_min.astype(i64),
        ms,
        mem,
        ds_,
        dep,
        rs,
        rdep,
    )


def state_arrays(state: Any) -> tuple[Any, ...]:
    """Copies of a ``State``'s counters in the kernel's layout (the histogram of moved
    counts is sized for every service's members)."""
    i64 = np.int64
    hist = np.zeros(max(len(m) for m in state.members) + 2, dtype=i64)
    hist[: len(state.moved_hist)] = state.moved_hist[: len(hist)]
    return (
        state.assign.astype(i64).copy(),
        np.ascontiguousarray(state.usage, dtype=i64).copy(),
        np.ascontiguousarray(state.trans, dtype=i64).copy(),
        state.machine_cost.astype(i64).copy(),
        np.ascontiguousarray(state.svc_loc, dtype=i64).copy(),
        state.nlocs.astype(i64).copy(),
        np.ascontiguousarray(state.svc_nb, dtype=i64).copy(),
        state.svc_moved.astype(i64).copy(),
        hist,
        np.array([state.machine_cost_sum, state.pmc_sum, state.mmc_sum, state.max_moved], i64),
    )


@jit
def machine_cost(md: Any, usage: Any, m: int, add: int, sub: int) -> int:
    """The load and balance cost of machine ``m`` with process ``add`` more and ``sub`` less
    (-1: none)."""
    req, cap, saf, wl, bal, wb = md[0], md[4], md[5], md[9], md[11], md[12]
    total = 0
    for r in range(usage.shape[1]):
        if wl[r]:
            u = usage[m, r]
            if add >= 0:
                u += req[add, r]
            if sub >= 0:
                u -= req[sub, r]
            if u > saf[m, r]:
                total += wl[r] * (u - saf[m, r])
    for b in range(bal.shape[0]):
        r1, r2 = bal[b, 0], bal[b, 1]
        u1, u2 = usage[m, r1], usage[m, r2]
        if add >= 0:
            u1 += req[add, r1]
            u2 += req[add, r2]
        if sub >= 0:
            u1 -= req[sub, r1]
            u2 -= req[sub, r2]
        v = bal[b, 2] * (cap[m, r1] - u1) - (cap[m, r2] - u2)
        if v > 0:
            total += wb[b] * v
    return total


@jit
def total_cost(md: Any, st: Any) -> int:
    """The objective of the state (load + balance + weighted move costs)."""
    w, sc = md[13], st[9]
    return sc[0] + w[0] * sc[1] + w[1] * sc[3] + w[2] * sc[2]


@jit
def shift_delta(md: Any, st: Any, p: int, m: int) -> int:
    """The exact cost change of moving ``p`` to ``m``, or ``INF`` when a hard rule forbids
    it (or ``m`` is its machine)."""
    return shift_delta_below(md, st, p, m, INF)


@jit
def shift_delta_below(md: Any, st: Any, p: int, m: int, limit: int) -> int:
    """``shift_delta`` when it is below ``limit``, else ``INF``. The cost comes before the
    conflict, spread and dependency rules: they take O(the service's size + its
    dependencies), and a scan for the best machine needs them only for the moves that would
    beat the best so far (a tenth of the time per process at 5,000 machines)."""
    req, pmc, svc, init, cap = md[0], md[1], md[2], md[3], md[4]
    loc, nb, mmc, trm, w, spread = md[6], md[7], md[8], md[10], md[13], md[14]
    ms, mem, ds, dep, rs, rdep = md[15], md[16], md[17], md[18], md[19], md[20]
    assign, usage, trans, mcost = st[0], st[1], st[2], st[3]
    svc_loc, nlocs, svc_nb, svc_moved, hist, sc = st[4], st[5], st[6], st[7], st[8], st[9]
    m0 = assign[p]
    if m == m0:
        return INF
    o, s = init[p], svc[p]
    for r in range(usage.shape[1]):
        if usage[m, r] + req[p, r] > cap[m, r]:
            return INF
        if trm[r] and m != o and trans[m, r] + req[p, r] > cap[m, r]:
            return INF
    delta = machine_cost(md, usage, m0, -1, p) - mcost[m0]
    delta += machine_cost(md, usage, m, p, -1) - mcost[m]
    change = (1 if m != o else 0) - (1 if m0 != o else 0)
    delta += w[0] * pmc[p] * change + w[2] * (mmc[o, m] - mmc[o, m0])
    if change == 1 and svc_moved[s] + 1 > sc[3]:
        delta += w[1]
    elif change == -1 and svc_moved[s] == sc[3] and hist[sc[3]] == 1:
        delta -= w[1]
    if delta >= limit:
        return INF
    for k in range(ms[s], ms[s + 1]):
        if assign[mem[k]] == m:
            return INF
    l0, l1 = loc[m0], loc[m]
    if l0 != l1 and svc_loc[s, l0] == 1 and svc_loc[s, l1] > 0 and nlocs[s] - 1 < spread[s]:
        return INF
    n0, n1 = nb[m0], nb[m]
    if n0 != n1:
        for k in range(ds[s], ds[s + 1]):
            if svc_nb[dep[k], n1] == 0:
                return INF
        if svc_nb[s, n0] == 1:
            for k in range(rs[s], rs[s + 1]):
                if svc_nb[rdep[k], n0] > 0:
                    return INF
    return delta


@jit
def apply_shift(md: Any, st: Any, p: int, m: int) -> None:
    """Move ``p`` to ``m`` with no check, keeping every counter and cost exact."""
    req, pmc, svc, init, loc, nb, mmc = md[0], md[1], md[2], md[3], md[6], md[7], md[8]
    assign, usage, trans, mcost = st[0], st[1], st[2], st[3]
    svc_loc, nlocs, svc_nb, svc_moved, hist, sc = st[4], st[5], st[6], st[7], st[8], st[9]
    m0 = assign[p]
    if m0 == m:
        return
    o, s = init[p], svc[p]
    c0 = machine_cost(md, usage, m0, -1, p)
    c1 = machine_cost(md, usage, m, p, -1)
    sc[0] += c0 - mcost[m0] + c1 - mcost[m]
    mcost[m0], mcost[m] = c0, c1
    for r in range(usage.shape[1]):
        usage[m0, r] -= req[p, r]
        usage[m, r] += req[p, r]
        if m0 != o:
            trans[m0, r] -= req[p, r]
        if m != o:
            trans[m, r] += req[p, r]
    l0, l1 = loc[m0], loc[m]
    if l0 != l1:
        svc_loc[s, l0] -= 1
        svc_loc[s, l1] += 1
        if svc_loc[s, l0] == 0:
            nlocs[s] -= 1
        if svc_loc[s, l1] == 1:
            nlocs[s] += 1
    svc_nb[s, nb[m0]] -= 1
    svc_nb[s, nb[m]] += 1
    change = (1 if m != o else 0) - (1 if m0 != o else 0)
    if change != 0:
        cur = svc_moved[s]
        hist[cur] -= 1
        hist[cur + change] += 1
        svc_moved[s] = cur + change
        if change > 0 and cur + 1 > sc[3]:
            sc[3] = cur + 1
        elif change < 0 and hist[sc[3]] == 0:
            sc[3] -= 1
        sc[1] += change * pmc[p]
    sc[2] += mmc[o, m] - mmc[o, m0]
    assign[p] = m


@jit
def _service_ok(md: Any, st: Any, s: int, m1: int, m2: int) -> bool:
    """Conflict on ``m1``/``m2``, spread and dependency (in their neighbourhoods) for ``s``."""
    nb, spread = md[7], md[14]
    ms, mem, ds, dep, rs, rdep = md[15], md[16], md[17], md[18], md[19], md[20]
    assign, nlocs, svc_nb = st[0], st[5], st[6]
    if nlocs[s] < spread[s]:
        return False
    c1 = 0
    c2 = 0
    for k in range(ms[s], ms[s + 1]):
        a = assign[mem[k]]
        c1 += a == m1
        c2 += a == m2
    if c1 > 1 or c2 > 1:
        return False
    for n in (nb[m1], nb[m2]):
        if svc_nb[s, n] > 0:
            for k in range(ds[s], ds[s + 1]):
                if svc_nb[dep[k], n] == 0:
                    return False
        else:
            for k in range(rs[s], rs[s + 1]):
                if svc_nb[rdep[k], n] > 0:
                    return False
    return True


@jit
def check_local(md: Any, st: Any, m1: int, m2: int, p: int, q: int) -> bool:
    """Whether the rules that moving ``p`` and ``q`` (-1: none) between ``m1`` and ``m2`` can
    break still hold (everything else held before)."""
    svc, cap, trm = md[2], md[4], md[10]
    usage, trans = st[1], st[2]
    for m in (m1, m2):
        for r in range(usage.shape[1]):
            if usage[m, r] > cap[m, r] or (trm[r] and trans[m, r] > cap[m, r]):
                return False
    if p >= 0 and not _service_ok(md, st, svc[p], m1, m2):
        return False
    return not (q >= 0 and not _service_ok(md, st, svc[q], m1, m2))


@jit
def swap_fits(md: Any, st: Any, p: int, q: int, m1: int, m2: int) -> bool:
    """Whether ``p`` (on ``m1``) and ``q`` (on ``m2``) exchanged keep both machines within
    capacity and transient capacity."""
    req, init, cap, trm = md[0], md[3], md[4], md[10]
    usage, trans = st[1], st[2]
    op, oq = init[p], init[q]
    for r in range(usage.shape[1]):
        if usage[m1, r] - req[p, r] + req[q, r] > cap[m1, r]:
            return False
        if usage[m2, r] - req[q, r] + req[p, r] > cap[m2, r]:
            return False
        if trm[r]:
            t1 = trans[m1, r] + (req[q, r] if m1 != oq else 0) - (req[p, r] if m1 != op else 0)
            t2 = trans[m2, r] + (req[p, r] if m2 != op else 0) - (req[q, r] if m2 != oq else 0)
            if t1 > cap[m1, r] or t2 > cap[m2, r]:
                return False
    return True


@jit
def swap_estimate(md: Any, st: Any, p: int, q: int, m1: int, m2: int) -> int:
    """The cost change of exchanging ``p`` (on ``m1``) and ``q`` (on ``m2``) but for the
    service-move cost: load and balance of the two machines, process and machine moves."""
    pmc, init, mmc, w = md[1], md[3], md[8], md[13]
    usage, mcost = st[1], st[3]
    op, oq = init[p], init[q]
    est = machine_cost(md, usage, m1, q, p) - mcost[m1]
    est += machine_cost(md, usage, m2, p, q) - mcost[m2]
    cp = (1 if m2 != op else 0) - (1 if m1 != op else 0)
    cq = (1 if m1 != oq else 0) - (1 if m2 != oq else 0)
    est += w[0] * (pmc[p] * cp + pmc[q] * cq)
    est += w[2] * (mmc[op, m2] - mmc[op, m1] + mmc[oq, m1] - mmc[oq, m2])
    return est


@jit
def try_swap(md: Any, st: Any, p: int, q: int, limit: int) -> int:
    """Exchange the machines of ``p`` and ``q`` when every rule holds and the exact cost
    change is at most ``limit``; the change, or ``INF`` (nothing applied)."""
    w = md[13]
    assign = st[0]
    m1, m2 = assign[p], assign[q]
    if m1 == m2 or not swap_fits(md, st, p, q, m1, m2):
        return INF
    est = swap_estimate(md, st, p, q, m1, m2)
    if est - 2 * w[1] > limit:  # the service-move cost can fall by two steps at most
        return INF
    before = total_cost(md, st)
    apply_shift(md, st, p, m2)
    apply_shift(md, st, q, m1)
    delta = total_cost(md, st) - before
    if delta <= limit and check_local(md, st, m1, m2, p, q):
        return delta
    apply_shift(md, st, q, m2)
    apply_shift(md, st, p, m1)
    return INF


@jit
def try_chain(md: Any, st: Any, p: int, m: int, tries: int, limit: int, out: Any) -> int:
    """An ejection chain: move ``p`` to ``m`` even where it does not fit, then a random process
    of ``m`` to the best of ``tries`` random machines; kept when every rule holds and the exact
    change is at most ``limit`` (the ejected process goes to ``out[4]``). The change, or
    ``INF`` (nothing applied)."""
    assign = st[0]
    m0 = assign[p]
    if m == m0:
        return INF
    n_proc = assign.shape[0]
    n_mach = md[4].shape[0]
    q = -1
    for _ in range(4 * n_proc // n_mach + 8):  # a process on m (P/M draws find one on average)
        c = np.random.randint(n_proc)
        if assign[c] == m and c != p:
            q = c
            break
    if q < 0:
        return INF
    before = total_cost(md, st)
    apply_shift(md, st, p, m)
    best_m, best_d = -1, INF
    for _ in range(tries):
        m2 = np.random.randint(n_mach)
        if m2 != m0:  # back to p's machine would be a swap
            d = shift_delta(md, st, q, m2)
            if d < best_d:
                best_m, best_d = m2, d
    if best_m >= 0:
        apply_shift(md, st, q, best_m)
        delta = total_cost(md, st) - before
        if delta <= limit and check_local(md, st, m0, m, p, -1):
            out[4] = q
            return delta
        apply_shift(md, st, q, m)
    apply_shift(md, st, p, m0)
    return INF


@jit
def keep(st: Any, best: Any, log: Any, ctl: Any, p: int) -> None:
    """Note that ``p`` changed since the best assignment (the log overflows to a full copy)."""
    if ctl[0] < len(log):
        log[ctl[0]] = p
        ctl[0] += 1
    else:
        ctl[1] = 1


@jit
def new_best(st: Any, best: Any, log: Any, ctl: Any, cost: int) -> None:
    assign = st[0]
    if ctl[1]:
        best[:] = assign
    else:
        for k in range(ctl[0]):
            best[log[k]] = assign[log[k]]
    ctl[0] = 0
    ctl[1] = 0
    ctl[2] = cost


@jit
def search(
    md: Any,
    st: Any,
    best: Any,
    log: Any,
    ctl: Any,
    history: Any,
    hot: Any,
    iters: int,
    seed: int,
    swap_share: float,
    shift_tries: int,
    chain_share: float,
) -> int:
    """``iters`` moves of late-acceptance hill climbing: a move is taken when the cost after
    it is at most the current cost or the cost ``len(history)`` moves ago. The moving process
    is drawn from ``hot`` (processes to favour) half the time, else from all. ``chain_share``
    of the moves are ejection chains (to a random machine), ``swap_share`` swaps (with a random
    process), the rest shifts (to the best of ``shift_tries`` random machines). ``best``
    (with ``ctl`` = [log length, log overflowed, best cost, history position, last ejected
    process]) follows the best state met. Returns the moves taken. ``seed`` < 0 continues the
    random stream of the previous call."""
    if seed >= 0:
        np.random.seed(seed)
    assign = st[0]
    n_proc = assign.shape[0]
    n_mach = md[4].shape[0]
    n_hist = history.shape[0]
    cur = total_cost(md, st)
    taken = 0
    for _ in range(iters):
        v = ctl[3] % n_hist
        ctl[3] += 1
        limit = max(history[v] - cur, 0)
        if len(hot) and np.random.random() < 0.5:
            p = hot[np.random.randint(len(hot))]
        else:
            p = np.random.randint(n_proc)
        kind = np.random.random()
        if kind < chain_share:
            d = try_chain(md, st, p, np.random.randint(n_mach), CHAIN_TRIES, limit, ctl)
            if d == INF:
                history[v] = cur
                continue
            keep(st, best, log, ctl, p)
            keep(st, best, log, ctl, ctl[4])
        elif kind < chain_share + swap_share:
            q = np.random.randint(n_proc)
            d = try_swap(md, st, p, q, limit)
            if d == INF:
                history[v] = cur
                continue
            keep(st, best, log, ctl, p)
            keep(st, best, log, ctl, q)
        else:
            m = np.random.randint(n_mach)
            d = shift_delta(md, st, p, m)
            for _ in range(shift_tries - 1):  # the best of a few machines
                m2 = np.random.randint(n_mach)
                d2 = shift_delta(md, st, p, m2)
                if d2 < d:
                    m, d = m2, d2
            if d > limit:
                history[v] = cur
                continue
            apply_shift(md, st, p, m)
            keep(st, best, log, ctl, p)
        taken += 1
        cur += d
        if cur < ctl[2]:
            new_best(st, best, log, ctl, cur)
        history[v] = cur
    return taken


@jit
def descend(md: Any, st: Any, order: Any, others: Any, targets: Any) -> int:
    """One pass of steepest descent: each process of ``order`` goes to its best machine among
    ``targets`` when that lowers the cost, else is swapped with the best improving process of
    ``others`` (none: shifts only). Returns the moves made."""
    req, init, cap, trm = md[0], md[3], md[4], md[10]
    usage, trans = st[1], st[2]
    moves = 0
    for k in range(order.shape[0]):
        p = order[k]
        o = init[p]
        best_m, best_d = -1, 0
        for i in range(targets.shape[0]):
            m = targets[i]
            # capacity here, before the call: a call costs about as much as the rest of
            # the pricing (it passes the model's and the state's arrays)
            fits = True
            for r in range(usage.shape[1]):
                if usage[m, r] + req[p, r] > cap[m, r] or (
                    trm[r] and m != o and trans[m, r] + req[p, r] > cap[m, r]
                ):
                    fits = False
                    break
            if not fits:
                continue
            d = shift_delta_below(md, st, p, m, best_d)
            if d < best_d:
                best_m, best_d = m, d
        if best_m >= 0:
            apply_shift(md, st, p, best_m)
            moves += 1
            continue
        best_q, best_d = -1, 0
        for j in range(others.shape[0]):
            q = others[j]
            d = try_swap(md, st, p, q, best_d - 1)
            if d < best_d:  # applied: undo it and remember it as the best so far
                best_q, best_d = q, d
                m1, m2 = st[0][q], st[0][p]
                apply_shift(md, st, q, m2)
                apply_shift(md, st, p, m1)
        if best_q >= 0:
            try_swap(md, st, p, best_q, best_d)
            moves += 1
    return moves
