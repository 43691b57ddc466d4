"""What a simulated day cost: energy, money and carbon per site, kind of work and hour, from the
placements alone, and the floor no schedule of the deferrable work can beat.

The power model is the scenario's (``scheduler.domain.energy``): a node draws its idle power
while it holds any replica and nothing when empty; each replica adds its dynamic power (its
CPU share of max - idle, its GPU share of the GPU watts). A replica runs from its start
(``ReplicaPlacement.start_time``, or its workload's ``placed_at`` when that is None) for its
workload's ``duration_s``. Facility power = IT power x the site's PUE.

Kinds of work: the mix's classes, with the deferrable batch workloads apart (``deferrable``:
``batch`` and ``gpu-training`` with a deadline; a GPU job's floor is its best GPU pool's),
each charged its attributed power (``energy.attributed_watts``: dynamic power plus its CPU
share of the node's idle power); ``idle`` is the rest of the idle power of powered nodes (the
share of their idle power no replica's CPU accounts for). The kinds add up to the cluster.

Rates: the *actual* hourly price and carbon intensity are the scenario's (the forecast the
scheduler sees) times (1 + u), u uniform in [-0.1, 0.1], drawn per site and hour (seeded): the
schedule is judged against what happened, not against what was forecast.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import numpy as np

from scheduler.domain import (
    Cluster,
    ReplicaPlacement,
    Scenario,
    Workload,
    WorkloadKind,
    WorkloadSpec,
    dynamic_watts,
)
from scheduler.loop import scenario_zone

NOISE = 0.10
KINDS = (
    "interactive",
    "regional",
    "gpu-inference",
    "gpu-training",
    "batch",
    "deferrable",
    "idle",
)
J_PER_KWH = 3.6e6


def is_deferrable(spec: WorkloadSpec) -> bool:
    """API.md "Time: deferrable work": BATCH with a duration and a deadline."""
    return spec.kind == WorkloadKind.BATCH and spec.duration_s > 0 and spec.deadline is not None


def kind_of(spec: WorkloadSpec) -> str:
    """The kind of work ``spec`` is counted under (a class of the mix, or ``deferrable``)."""
    if is_deferrable(spec):
        return "deferrable"
    cls = spec.labels.get("class", "")
    if cls in KINDS:
        return cls
    return "regional" if spec.is_service else "batch"


# --------------------------------------------------------------------------- hours


def per_hour_grouped(
    start: np.ndarray,
    end: np.ndarray,
    value: np.ndarray,
    group: np.ndarray,
    groups: int,
    hours: int,
) -> np.ndarray:
    """(groups, hours): per group, ``value`` x the seconds of [start, end) in each hour of
    [0, hours x 3600) (seconds from the start of the run); exact, O(intervals + hours)."""
    horizon = hours * 3600.0
    s = np.clip(np.asarray(start, dtype=float), 0.0, horizon)
    e = np.clip(np.asarray(end, dtype=float), 0.0, horizon)
    keep = e > s
    s, e, v, g = s[keep], e[keep], np.asarray(value, dtype=float)[keep], np.asarray(group)[keep]
    hs = np.minimum((s // 3600).astype(np.int64), hours - 1)
    he = np.minimum((e // 3600).astype(np.int64), hours)  # e on a boundary: nothing in hour he
    out = np.zeros((groups, hours + 1))
    one = hs == he
    np.add.at(out, (g[one], hs[one]), v[one] * (e[one] - s[one]))
    many = ~one
    gm, hsm, hem, vm = g[many], hs[many], he[many], v[many]
    np.add.at(out, (gm, hsm), vm * ((hsm + 1) * 3600.0 - s[many]))
    np.add.at(out, (gm, hem), vm * (e[many] - hem * 3600.0))
    # whole hours between: a difference array, summed once
    diff = np.zeros((groups, hours + 2))
    np.add.at(diff, (gm, hsm + 1), vm)
    np.add.at(diff, (gm, hem), -vm)
    full = np.cumsum(diff, axis=1)[:, : hours + 1]
    # what the running sum leaves of +v ... -v is rounding, not power: an hour after every run
    # must read 0
    full[np.abs(full) < 1e-9 * max(1.0, float(np.abs(vm).max(initial=0.0)))] = 0.0
    out += full * 3600.0
    return out[:, :hours]


def per_hour(start: np.ndarray, end: np.ndarray, value: np.ndarray, hours: int) -> np.ndarray:
    """``per_hour_grouped`` with one group: (hours,)."""
    n = len(np.asarray(start))
    return per_hour_grouped(start, end, value, np.zeros(n, dtype=np.int64), 1, hours)[0]


# --------------------------------------------------------------------------- rates


@dataclass(frozen=True)
class Rates:
    """Per site (scenario order) and hour of the run: price (CNY/kWh) and carbon intensity
    (kg/kWh) at the meter, and each site's PUE."""

    sites: tuple[str, ...]
    pue: np.ndarray  # (sites,)
    price: np.ndarray  # (sites, hours)
    carbon: np.ndarray  # (sites, hours)

    @property
    def hours(self) -> int:
        return int(self.price.shape[1])

    def cumulative(self, which: str) -> np.ndarray:
        """(sites, hours + 1): the rate integrated from the start to each hour boundary, per
        second (CNY/kWh x s, kg/kWh x s: times kW / 3600 gives CNY or kg)."""
        rate = self.price if which == "price" else self.carbon
        return np.concatenate(
            [np.zeros((len(self.sites), 1)), np.cumsum(rate, axis=1) * 3600.0], axis=1
        )


def scenario_rates(
    scenario: Scenario, start: datetime, hours: int, seed: int | None, noise: float = NOISE
) -> Rates:
    """The scenario's hourly rates from ``start`` (local time) for ``hours``; with a seed, the
    actual profile: each value times (1 + u), u uniform in [-noise, noise]."""
    zone = scenario_zone(scenario)
    price = np.zeros((len(scenario.sites), hours))
    carbon = np.zeros_like(price)
    for h in range(hours):
        local = (start + timedelta(hours=h)).astimezone(zone)
        for si, site in enumerate(scenario.sites):
            price[si, h] = site.price_at(local.hour, local.month)
            carbon[si, h] = site.carbon_at(local.hour)
    if seed is not None:
        rng = np.random.default_rng([seed, 11])
        price *= 1.0 + rng.uniform(-noise, noise, price.shape)
        carbon *= 1.0 + rng.uniform(-noise, noise, carbon.shape)
    pue = np.asarray([s.pue for s in scenario.sites])
    return Rates(scenario.site_names, pue, price, carbon)


# --------------------------------------------------------------------------- the ledger


@dataclass(frozen=True)
class Runs:
    """Every placed replica as it ran: node index (``Cluster`` order), start and end (seconds
    from the start of the run), kind index (``KINDS``), attributed dynamic and idle watts."""

    node: np.ndarray
    start: np.ndarray
    end: np.ndarray
    kind: np.ndarray
    dynamic_w: np.ndarray
    idle_w: np.ndarray


def seconds(t: datetime, start: datetime) -> float:
    """``t`` as seconds from the start of the run."""
    return (t - start).total_seconds()


def replica_start(w: Workload, replica: int) -> datetime | None:
    """When replica ``replica`` of placed ``w`` starts: its start_time, else w.placed_at."""
    rp = w.placements[replica]
    return rp.start_time if rp.start_time is not None else w.placed_at


def runs_of(
    workloads: Iterable[Workload],
    cluster: Cluster,
    start: datetime,
    spans: Mapping[str, Sequence[tuple[float, float]]] | None = None,
) -> Runs:
    """The replicas of every placed workload (any workload with placements and placed_at):
    each from its start for its duration, or over ``spans[w.id][i]`` where given (a part of a
    run between moves)."""
    rows: list[tuple[int, float, float, int, float, float]] = []
    kind_index = {k: i for i, k in enumerate(KINDS)}
    for w in workloads:
        if not w.placements or w.placed_at is None:
            continue
        r = w.spec.resources
        k = kind_index[kind_of(w.spec)]
        for i, rp in enumerate(w.placements):
            node = cluster.index[rp.node]
            pool = cluster.pools[int(cluster.node_pool[node])]
            if spans is not None and w.id in spans:
                t0, t1 = spans[w.id][i]
            else:
                t0 = seconds(replica_start(w, i) or w.placed_at, start)
                t1 = t0 + w.spec.duration_s
            idle = pool.idle_watts * r.cpu_millis / pool.node.cpu_millis
            rows.append((node, t0, t1, k, dynamic_watts(pool, r), idle))
    cols = list(zip(*rows, strict=True)) if rows else [()] * 6
    return Runs(
        node=np.asarray(cols[0], dtype=np.int64),
        start=np.asarray(cols[1], dtype=float),
        end=np.asarray(cols[2], dtype=float),
        kind=np.asarray(cols[3], dtype=np.int64),
        dynamic_w=np.asarray(cols[4], dtype=float),
        idle_w=np.asarray(cols[5], dtype=float),
    )


def awake_blocks(runs: Runs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(node, start, end) of the spans in which each node holds at least one replica (the
    union of its replicas' runs)."""
    if not len(runs.node):
        empty = np.zeros(0)
        return empty.astype(np.int64), empty, empty
    order = np.lexsort((runs.start, runs.node))
    node, s, e = runs.node[order], runs.start[order], runs.end[order]
    # one increasing key across nodes, so a running maximum never carries from node to node
    big = float(max(e.max(), s.max()) + 1.0)
    key_end = np.maximum.accumulate(node * big + e)
    new = np.ones(len(node), dtype=bool)
    new[1:] = (node[1:] * big + s[1:]) > key_end[:-1]
    first = np.flatnonzero(new)
    last = np.append(first[1:] - 1, len(node) - 1)
    return node[first], s[first], key_end[last] - node[first] * big


@dataclass(frozen=True)
class Ledger:
    """Facility energy (kWh), cost (CNY) and carbon (kg) per site, kind (``KINDS``) and hour."""

    sites: tuple[str, ...]
    kwh: np.ndarray  # (sites, kinds, hours)
    cny: np.ndarray
    kg: np.ndarray

    def total(self, kind: str | None = None) -> tuple[float, float, float]:
        """(kWh, CNY, kg) of the whole cluster, or of one kind of work."""
        if kind is None:
            return float(self.kwh.sum()), float(self.cny.sum()), float(self.kg.sum())
        k = KINDS.index(kind)
        return (
            float(self.kwh[:, k].sum()),
            float(self.cny[:, k].sum()),
            float(self.kg[:, k].sum()),
        )


def ledger(runs: Runs, cluster: Cluster, rates: Rates) -> Ledger:
    """The ledger of ``runs`` over the hours of ``rates`` (see the module docstring)."""
    n_sites, hours = len(rates.sites), rates.hours
    site = cluster.node_site[runs.node] if len(runs.node) else np.zeros(0, dtype=np.int64)
    group = site * len(KINDS) + runs.kind
    it = per_hour_grouped(
        runs.start, runs.end, runs.dynamic_w + runs.idle_w, group, n_sites * len(KINDS), hours
    ).reshape(n_sites, len(KINDS), hours)
    attributed_idle = per_hour_grouped(runs.start, runs.end, runs.idle_w, site, n_sites, hours)
    node, s, e = awake_blocks(runs)
    idle_of_node = np.asarray([p.idle_watts for p in cluster.pools])[cluster.node_pool]
    node_idle = per_hour_grouped(s, e, idle_of_node[node], cluster.node_site[node], n_sites, hours)
    it[:, KINDS.index("idle")] += np.maximum(node_idle - attributed_idle, 0.0)
    kwh = it / J_PER_KWH * rates.pue[:, None, None]
    return Ledger(rates.sites, kwh, kwh * rates.price[:, None, :], kwh * rates.carbon[:, None, :])


# --------------------------------------------------------------------------- floors


def _integral(cum: np.ndarray, rate: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The rate of one site integrated from 0 to each ``t`` (seconds)."""
    h = np.clip((t // 3600).astype(np.int64), 0, len(rate) - 1)
    return cum[h] + (t - h * 3600.0) * rate[h]


def deferrable_floor(
    arrivals: Sequence[tuple[float, WorkloadSpec]],
    scenario: Scenario,
    rates: Rates,
    start: datetime,
    cpu_on_gpu_nodes: bool = False,
) -> tuple[float, float]:
    """(CNY, kg): each deferrable workload (submitted at the given second) at its cheapest
    start, for cost and for carbon apart, between its submission and its deadline less its
    duration, on the best pool of any site it may use, ignoring capacity: a floor no schedule
    that meets the deadlines can beat (charged as the ledger charges it)."""
    cum = {w: rates.cumulative(w) for w in ("price", "carbon")}
    best = {"price": 0.0, "carbon": 0.0}
    for submitted, spec in arrivals:
        if not is_deferrable(spec) or spec.deadline is None:
            continue
        d = float(spec.duration_s)
        lo = submitted
        hi = max(lo, seconds(spec.deadline, start) - d)
        k = np.arange(math.floor(lo / 3600), math.ceil((hi + d) / 3600) + 1) * 3600.0
        cand = np.concatenate([[lo, hi], k, k - d])
        cand = cand[(cand >= lo) & (cand <= hi)]
        for which in best:
            options = []
            for si, site in enumerate(scenario.sites):
                watts = _site_watts(scenario, site.name, spec, cpu_on_gpu_nodes)
                if watts is None:
                    continue
                rate = rates.price[si] if which == "price" else rates.carbon[si]
                c = cum[which][si]
                window = _integral(c, rate, cand + d) - _integral(c, rate, cand)
                options.append(watts * rates.pue[si] * float(window.min()) / J_PER_KWH)
            if options:
                best[which] += min(options)
    return best["price"], best["carbon"]


def _site_watts(
    scenario: Scenario, site: str, spec: WorkloadSpec, cpu_on_gpu_nodes: bool
) -> float | None:
    """The least attributed IT watts of ``spec``'s replicas on a pool of ``site`` that may take
    it (SLO, residency, GPU model, node kind, size); None if none may."""
    s = scenario.site(site)
    if spec.allowed_sites and site not in spec.allowed_sites:
        return None
    if spec.max_latency_ms > 0 and s.latency_ms.get(spec.origin, math.inf) > spec.max_latency_ms:
        return None
    r = spec.resources
    best: float | None = None
    for pool in s.pools:
        if r.wants_gpu and (
            not pool.node.gpus or (spec.gpu_models and pool.gpu_model not in spec.gpu_models)
        ):
            continue
        if not r.wants_gpu and pool.node.gpus and not cpu_on_gpu_nodes:
            continue
        if r.cpu_millis > pool.node.cpu_millis or r.memory_mib > pool.node.memory_mib:
            continue
        watts = dynamic_watts(pool, r) + pool.idle_watts * r.cpu_millis / pool.node.cpu_millis
        watts *= spec.replica_count
        best = watts if best is None else min(best, watts)
    return best


# --------------------------------------------------------------------------- deadlines


def timing(
    workloads: Iterable[Workload], start: datetime, tolerance_s: float = 1.0
) -> dict[str, float | int | None]:
    """Of the deferrable workloads: how many missed their deadline (not placed, or some
    replica ends after it) and the mean wait from submission to the first replica's start."""
    misses = 0
    waits: list[float] = []
    count = 0
    for w in workloads:
        spec = w.spec
        if not is_deferrable(spec) or spec.deadline is None:
            continue
        count += 1
        if not w.placements or w.placed_at is None or w.created_at is None:
            misses += 1
            continue
        starts = [replica_start(w, i) or w.placed_at for i in range(len(w.placements))]
        end = max(starts) + timedelta(seconds=spec.duration_s)
        if (end - spec.deadline).total_seconds() > tolerance_s:
            misses += 1
        waits.append((min(starts) - w.created_at).total_seconds())
    return {
        "deferrable": count,
        "deadline_misses": misses,
        "mean_deferral_s": sum(waits) / len(waits) if waits else None,
    }


def hourly_series(book: Ledger) -> dict[str, dict[str, dict[str, list[float]]]]:
    """For JSON and the plot: per site and kind of work, the facility power (kW, the mean over
    each hour), the energy cost (CNY) and the carbon (kg) of each hour, trailing empty hours
    cut."""
    used = np.flatnonzero(book.kwh.sum(axis=(0, 1)) > 0)
    end = int(used[-1]) + 1 if len(used) else 0
    return {
        site: {
            name: {k: _rounded(values[si, ki, :end]) for ki, k in enumerate(KINDS)}
            for name, values in (
                ("power_kw", book.kwh),
                ("energy_cny", book.cny),
                ("carbon_kg", book.kg),
            )
        }
        for si, site in enumerate(book.sites)
    }


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 3) for v in values]


def by_site(book: Ledger) -> Mapping[str, dict[str, float]]:
    """Totals per site: energy (kWh), cost (CNY), carbon (kg)."""
    return {
        site: {
            "kwh": float(book.kwh[si].sum()),
            "energy_cny": float(book.cny[si].sum()),
            "carbon_kg": float(book.kg[si].sum()),
        }
        for si, site in enumerate(book.sites)
    }


def segments(
    records: Sequence[Workload],
    moves: Mapping[str, Sequence[tuple[datetime, tuple[ReplicaPlacement, ...]]]],
    start: datetime,
) -> tuple[list[Workload], dict[str, list[tuple[float, float]]]]:
    """A moved workload's run as its parts: before each move (its placements then) and after
    the last (its final placements), each a workload of its own (id ``<id>@<k>``) with its
    replicas' spans; workloads never moved stay as they are (no span: their own)."""
    out: list[Workload] = []
    spans: dict[str, list[tuple[float, float]]] = {}
    for w in records:
        history = moves.get(w.id)
        if not history or not w.placements or w.placed_at is None:
            out.append(w)
            continue
        runs = [
            (
                s := seconds(replica_start(w, i) or w.placed_at, start),
                s + w.spec.duration_s,
            )
            for i in range(len(w.placements))
        ]
        cut = [seconds(at, start) for at, _ in history] + [math.inf]
        parts = [placements for _, placements in history] + [w.placements]
        begin = -math.inf
        for k, (placements, end) in enumerate(zip(parts, cut, strict=True)):
            part = replace(w, id=f"{w.id}@{k}", placements=placements)
            spans[part.id] = [
                (lo := max(a, begin), max(lo, min(b, end))) for a, b in runs
            ]  # a part a replica did not run in is empty
            out.append(part)
            begin = end
    return out, spans
