"""Rounding the relaxation's solution to whole workloads: the first decision to pack."""

from __future__ import annotations

import math
from collections.abc import Sequence

from scheduler.domain import Topology
from scheduler.solver.valley.model import Model, WorkloadClass, amounts


def round_solution(model: Model, lp_x: Sequence[float]) -> list[int]:
    """The model's variables from the LP's: whole workloads rounded down, replicas split
    over pools like the LP's, wake counts rounded up."""
    hint = [0] * model.lm.size
    for c in model.classes:
        n = c.spec.replica_count
        k = math.floor(lp_x[c.k] + 1e-6)
        hint[c.k] = k
        if c.spec.topology == Topology.GANG:
            _round_gang(c, hint, lp_x, k, n)
        else:
            split(hint, list(c.x.values()), lp_x, k * n)
            if c.u and k:
                _keep_spread(c, hint, lp_x)
            for site, v in c.u.items():
                hint[v] = int(any(hint[c.x[p]] > 0 for p in c.elig.pools_by_site[site]))
    for p in model.pools:
        if p.wake >= 0:
            hint[p.wake] = min(p.empty_nodes, math.ceil(lp_x[p.wake] - 1e-6))
    return hint


def greedy_solution(model: Model) -> list[float]:
    """A decision when the LP ran out of time: classes by penalty per replica (priority first),
    each class's workloads into its cheapest pools while their totals have room, waking nodes
    as needed. GANG and SPREAD workloads are left to the repairs (few, and placed whole there).
    Feasible for the pool totals, like the LP's; ``round_solution`` makes it whole."""
    lm = model.lm
    x = [0.0] * lm.size
    free = {p.index: dict(p.free_awake) for p in model.pools}
    spare = {p.index: p.empty_nodes for p in model.pools}
    cap = {p.index: p.node_cap for p in model.pools}
    woken = dict.fromkeys(free, 0)

    def room(p: int, need: dict[str, int]) -> int:
        return max(0, min((free[p][r] + spare[p] * cap[p][r]) // a for r, a in need.items()))

    for c in sorted(model.classes, key=lambda c: -c.penalty / c.spec.replica_count):
        if c.spec.topology in (Topology.GANG, Topology.SPREAD):
            continue
        need = {r: a for r, a in amounts(c.spec.resources).items() if a}
        n = c.spec.replica_count
        pools = sorted(c.x, key=lambda p: lm.cost[c.x[p]])
        k = min(len(c.members), sum(room(p, need) for p in pools) // n)
        x[c.k] = k
        left = k * n
        for p in pools:
            take = min(left, room(p, need))
            if not take:
                continue
            x[c.x[p]] += take
            left -= take
            for r, a in need.items():
                free[p][r] -= take * a
            wake = max(
                (math.ceil(-free[p][r] / cap[p][r]) for r in need if free[p][r] < 0), default=0
            )
            spare[p] -= wake
            woken[p] += wake
            for r in free[p]:
                free[p][r] += wake * cap[p][r]
            if not left:
                break
    for ps in model.pools:
        if ps.wake >= 0:
            x[ps.wake] = woken[ps.index]
    return x


def _round_gang(c: WorkloadClass, hint: list[int], lp_x: Sequence[float], k: int, n: int) -> None:
    """GANG workloads to sites, most where the LP puts most; each site's replicas split over
    its pools."""
    remaining = k
    for _site, v in sorted(c.g.items(), key=lambda kv: -lp_x[kv[1]]):
        take = min(remaining, math.floor(lp_x[v] + 1e-6))
        hint[v] = take
        remaining -= take
    if remaining and c.g:
        best = max(c.g, key=lambda s: lp_x[c.g[s]])
        hint[c.g[best]] += remaining
    for site, v in c.g.items():
        pools = c.elig.pools_by_site[site]
        split(hint, [c.x[p] for p in pools], lp_x, hint[v] * n)


def _keep_spread(c: WorkloadClass, hint: list[int], lp_x: Sequence[float]) -> None:
    """A SPREAD workload's rounded replicas cover at least min_sites sites: each site the LP
    uses most gets one replica, taken from the site that has the most."""
    sites = sorted(c.u, key=lambda s: -lp_x[c.u[s]])[: c.spec.min_sites]

    def in_site(site: str) -> list[int]:
        return [c.x[p] for p in c.elig.pools_by_site[site]]

    for site in sites:
        if any(hint[v] for v in in_site(site)):
            continue
        donor = max((v for s in c.u if s != site for v in in_site(s)), key=lambda v: hint[v])
        if hint[donor] <= 1:
            return
        hint[donor] -= 1
        hint[max(in_site(site), key=lambda v: lp_x[v])] += 1


def split(hint: list[int], vars_: Sequence[int], lp_x: Sequence[float], total: int) -> None:
    """``total`` split over ``vars_`` in proportion to their LP values, by largest remainder."""
    if not vars_:
        return
    weights = [max(0.0, lp_x[v]) for v in vars_]
    s = sum(weights)
    # the epsilon keeps 0.9999999 from losing its whole replica
    exact = [total * w / s for w in weights] if s > 0 else [0.0] * len(vars_)
    parts = [min(total, math.floor(e + 1e-6)) for e in exact]
    while sum(parts) > total:
        parts[max(range(len(parts)), key=lambda i: parts[i] - exact[i])] -= 1
    rest = total - sum(parts)
    order = sorted(range(len(vars_)), key=lambda i: parts[i] - exact[i])
    for i in range(rest):
        parts[order[i % len(order)]] += 1
    for v, part in zip(vars_, parts, strict=True):
        hint[v] = part
