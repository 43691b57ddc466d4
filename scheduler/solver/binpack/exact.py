"""Exact searches with CP-SAT: the full assignment model (small instances) and an exact cover by
triples (instances where every bin must be filled exactly, such as the Triplet ones)."""

from __future__ import annotations

from typing import Any

import numpy as np
from ortools.sat.python import cp_model

from scheduler.solver.binpack.bounds import conflict_clique
from scheduler.solver.binpack.packing import IntArray, bins_used, relabel
from scheduler.solver.binpack.work import CPSAT_DTIME_PER_UNIT, CPSAT_SOLVE_UNITS, Work

# the full assignment model is built only up to this many item x bin booleans
FULL_MODEL_MAX_VARS = 2_500
# more candidate triples than this: not a triplet-like instance, the cover model would be too
# large
MAX_TRIPLES = 200_000

Assignment = dict[tuple[int, int], cp_model.IntVar]


def cp_solver(work: Work, units: float, seed: int, workers: int) -> cp_model.CpSolver:
    """A CP-SAT solver limited to ``units`` of deterministic time (at least 0.01) and to the
    wall-clock time ``work`` has left, with a worker count and a seed."""
    s = cp_model.CpSolver()
    s.parameters.max_deterministic_time = max(0.01, units * CPSAT_DTIME_PER_UNIT)
    s.parameters.max_time_in_seconds = max(0.01, work.wall_left())
    s.parameters.num_workers = workers
    s.parameters.random_seed = seed
    return s


def cp_solve(solver: cp_model.CpSolver, model: cp_model.CpModel, work: Work) -> Any:
    """Solve ``model`` and charge its deterministic time to ``work``; the status."""
    status = solver.solve(model)
    work.charge(CPSAT_SOLVE_UNITS + solver.deterministic_time / CPSAT_DTIME_PER_UNIT)
    if solver.wall_time >= solver.parameters.max_time_in_seconds - 1e-3:
        work.wall_capped = True
    return status


def full_model(
    a: IntArray,
    c: IntArray,
    ub_x: IntArray,
    lb: int,
    work: Work,
    units: float,
    seed: int,
    workers: int,
) -> tuple[IntArray | None, bool]:
    """The assignment model over at most ub-1 bins: minimise the bins used, within ``units``
    of ``work``. Returns (packing better than ``ub_x`` or None, whether the best bin count is
    proven optimal)."""
    n = len(a)
    nb = bins_used(ub_x) - 1  # only a better packing is of interest
    nonneg = bool((a >= 0).all())
    # Symmetry breaking: a clique of conflicting items goes to bins 0..k-1, and every other item
    # (in decreasing size) to a bin no later than its position in that order.
    clique = conflict_clique(a, c) if nonneg else []
    if len(clique) > nb:
        return None, True  # the clique alone needs more bins than a better packing has
    in_clique = set(clique)
    by_size = np.argsort(-(a / c).sum(axis=1), kind="stable").tolist()
    order = clique + [i for i in by_size if i not in in_clique]
    model, x = _assignment_model(a, c, order, len(clique), nb, lb)
    # hint: the greedy packing relabelled to respect the symmetry breaking where it can
    hint = _relabel_for_order(ub_x, order)
    for (i, b), v in x.items():
        model.add_hint(v, int(hint[i] == b))
    solver = cp_solver(work, units, seed, workers)
    status = cp_solve(solver, model, work)
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        out = np.full(n, -1, dtype=np.int64)
        for (i, b), v in x.items():
            if solver.boolean_value(v):
                out[i] = b
        return relabel(out), status == cp_model.OPTIMAL
    # INFEASIBLE: no packing with fewer than ub bins, the greedy one is optimal
    return None, status == cp_model.INFEASIBLE


def _assignment_model(
    a: IntArray, c: IntArray, order: list[int], fixed: int, nb: int, lb: int
) -> tuple[cp_model.CpModel, Assignment]:
    """Items into ``nb`` bins, at least ``lb`` of them used, minimising the bins used; the item
    at position p of ``order`` goes to a bin <= p, and the first ``fixed`` (a clique) each to
    their own."""
    d = a.shape[1]
    model = cp_model.CpModel()
    used = [model.new_bool_var(f"used[{b}]") for b in range(nb)]
    x: Assignment = {}
    for pos, i in enumerate(order):
        if pos < fixed:
            x[i, pos] = model.new_bool_var(f"x[{i},{pos}]")
            model.add(x[i, pos] == 1)
            continue
        for b in range(min(pos + 1, nb)):
            x[i, b] = model.new_bool_var(f"x[{i},{b}]")
    # every item in exactly one bin
    of_item: dict[int, list[cp_model.IntVar]] = {}
    for (i, _), v in x.items():
        of_item.setdefault(i, []).append(v)
    for vs_i in of_item.values():
        model.add_exactly_one(vs_i)
    # capacity of every used bin in every dimension; nothing in an unused bin
    by_bin: dict[int, list[int]] = {}
    for i, b in x:
        by_bin.setdefault(b, []).append(i)
    for b, members in by_bin.items():
        vs = [x[i, b] for i in members]
        for k in range(d):
            coefs = [int(a[i, k]) for i in members]
            if sum(max(0, v) for v in coefs) > c[k]:
                model.add(cp_model.LinearExpr.weighted_sum(vs, coefs) <= int(c[k]) * used[b])
        for v in vs:
            model.add_implication(v, used[b])
    # used bins come first
    for b in range(nb - 1):
        model.add_implication(used[b + 1], used[b])
    model.add(sum(used) >= lb)
    model.minimize(sum(used))
    return model, x


def _relabel_for_order(x: IntArray, order: list[int]) -> IntArray:
    """Bins renumbered by the position (in ``order``) of their first item, which satisfies
    "item at position p goes to a bin <= p" (a hint, so clique items may still clash)."""
    pos = np.empty(len(order), dtype=np.int64)
    pos[np.asarray(order, dtype=np.int64)] = np.arange(len(order))
    first: dict[int, int] = {}
    for i in order:
        first.setdefault(int(x[i]), int(pos[i]))
    ranked = sorted(first, key=lambda b: first[b])
    label = {b: k for k, b in enumerate(ranked)}
    return np.asarray([label[int(b)] for b in x], dtype=np.int64)


def triple_cover(
    a: IntArray, c: IntArray, work: Work, units: float, seed: int, workers: int
) -> IntArray | None:
    """When n = 3B and every dimension sums to exactly B bins, a packing into B bins fills
    every bin exactly; look for one made of triples (an exact cover) within ``units`` of
    ``work``. None if not applicable or not found within that work."""
    n = len(a)
    if n % 3 or not n:
        return None
    if not (a.sum(axis=0) == n // 3 * c).all():
        return None
    triples = _exact_triples(a, c)
    work.cells(n * n * a.shape[1])
    if not triples:
        return None
    covers: list[list[int]] = [[] for _ in range(n)]
    for t_index, t in enumerate(triples):
        for i in t:
            covers[i].append(t_index)
    if any(not cv for cv in covers):
        return None
    model = cp_model.CpModel()
    y = [model.new_bool_var(f"triple[{t}]") for t in range(len(triples))]
    for i in range(n):
        model.add_exactly_one([y[t] for t in covers[i]])  # every item in exactly one triple
    solver = cp_solver(work, units, seed, workers)
    # quick restarts find exact covers of 500 items in well under a second where the default
    # single-worker search can stall for many seconds
    solver.parameters.search_branching = cp_model.PORTFOLIO_WITH_QUICK_RESTART_SEARCH
    status = cp_solve(solver, model, work)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    out = np.full(n, -1, dtype=np.int64)
    b = 0
    for k, v in enumerate(y):
        if solver.boolean_value(v):
            out[list(triples[k])] = b
            b += 1
    return out


def _exact_triples(a: IntArray, c: IntArray) -> list[tuple[int, int, int]]:
    """Every triple i < j < k of items that fills a bin exactly (empty when there are more
    than ``MAX_TRIPLES``)."""
    n = len(a)
    index: dict[bytes, list[int]] = {}
    for i in range(n):
        index.setdefault(a[i].tobytes(), []).append(i)
    triples: list[tuple[int, int, int]] = []
    seen: set[tuple[int, int, int]] = set()
    for i in range(n):
        need = c - a[i] - a[i + 1 :]
        for off, row in enumerate(need):
            j = i + 1 + off
            for k in index.get(row.tobytes(), ()):
                if k > j:
                    t = (i, j, k)
                    if t not in seen:
                        seen.add(t)
                        triples.append(t)
        if len(triples) > MAX_TRIPLES:
            return []
    return triples
