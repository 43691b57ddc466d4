"""What deferrable work may choose from: its possible start hours, and the mean rates of the
hours a run would take (``RunRates``), read from the problem's forecast."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from scheduler.domain import SiteRates, Topology, WorkloadKind, WorkloadSpec
from scheduler.domain.forecast import HOUR_S, hour_of
from scheduler.solver.filters import Eligibility
from scheduler.solver.objective import carbon_price
from scheduler.solver.problem import Problem, SolverParams


def shifting_applies(problem: Problem, params: SolverParams) -> bool:
    """Whether the problem carries what placing work to start later needs, and it is on."""
    return (
        params.time_shifting
        and params.policy == "valley"
        and problem.now is not None
        and problem.forecast is not None
        and problem.timeline is not None
    )


def is_deferrable(spec: WorkloadSpec) -> bool:
    """API.md "Time": BATCH with a duration and a deadline. Valley shifts CPU and GPU work, a
    GANG whole (one site, one start for all its replicas); SPREAD work and work with a per-node
    limit of its own start now (the joint model does not keep their rules per hour)."""
    return (
        spec.kind == WorkloadKind.BATCH
        and spec.duration_s > 0
        and spec.deadline is not None
        and spec.topology != Topology.SPREAD
        and spec.max_replicas_per_node == 0
    )


def start_hours(
    problem: Problem, params: SolverParams, elig: Mapping[str, Eligibility]
) -> dict[str, tuple[int, ...]]:
    """Per deferrable workload of the problem, the absolute hours after the current one it may
    start at: it ends by its deadline, and within the timeline's horizon (whose capacity is
    known). Workloads with none start now, like all others."""
    if not shifting_applies(problem, params):
        return {}
    assert problem.now is not None and problem.timeline is not None
    first = hour_of(problem.now) + 1
    horizon_end = problem.timeline.end
    out: dict[str, tuple[int, ...]] = {}
    for w in problem.workloads:
        s = w.spec
        if not is_deferrable(s) or elig[w.id].final_reason:
            continue
        assert s.deadline is not None
        hours = math.ceil(s.duration_s / HOUR_S)
        latest = math.floor((s.deadline.timestamp() - s.duration_s) / HOUR_S)
        last = min(latest, horizon_end - hours)
        if last >= first:
            out[w.id] = tuple(range(first, last + 1))
    return out


@dataclass(frozen=True, slots=True)
class RunCost:
    """Mean rates of a run, per IT watt per hour: energy CNY, carbon kg, and both in CNY with
    carbon priced (what the objective counts)."""

    energy_cny: float
    carbon_kg: float
    money: float


class RunRates:
    """Mean price and carbon of the hours a run takes, per site, from the forecast: hours are
    weighted by how much of each the run covers (a run from now covers what is left of the
    current hour)."""

    def __init__(self, problem: Problem, params: SolverParams, end_hour: int) -> None:
        assert problem.now is not None and problem.forecast is not None
        self.base = hour_of(problem.now)
        n = max(1, end_hour - self.base)
        self.cprice = carbon_price(problem, params)
        self._cum: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
        self.pue = {s.name: s.pue for s in problem.scenario.sites}
        for site in problem.scenario.site_names:
            price, carbon = problem.forecast.hourly(site, self.base, n)
            self._cum[site] = (
                np.concatenate(([0.0], np.cumsum(price))),
                np.concatenate(([0.0], np.cumsum(carbon))),
                float(n),
            )
        self._memo: dict[tuple[str, float, int], RunCost] = {}

    def _mean(self, cum: np.ndarray, n: float, start_s: float, end_s: float) -> float:
        def integral(t: float) -> float:
            u = min(max(t / HOUR_S - self.base, 0.0), n)
            i = min(int(u), int(n) - 1)
            return float(cum[i] + (u - i) * (cum[i + 1] - cum[i]))

        span = (end_s - start_s) / HOUR_S
        return (integral(end_s) - integral(start_s)) / span if span > 0 else 0.0

    def rates(self, site: str, start_s: float, duration_s: int) -> SiteRates:
        """The site's mean price and carbon intensity over [start, start + duration)."""
        price_cum, carbon_cum, n = self._cum[site]
        end_s = start_s + duration_s
        return SiteRates(
            site,
            self.pue[site],
            self._mean(price_cum, n, start_s, end_s),
            self._mean(carbon_cum, n, start_s, end_s),
        )

    def cost(self, site: str, start_s: float, duration_s: int) -> RunCost:
        """Per IT watt per hour of the run, at the site's PUE."""
        key = (site, start_s, duration_s)
        got = self._memo.get(key)
        if got is None:
            r = self.rates(site, start_s, duration_s)
            kw = r.pue / 1000.0
            energy, carbon = kw * r.price_cny_per_kwh, kw * r.carbon_kg_per_kwh
            got = RunCost(energy, carbon, energy + carbon * self.cprice / 1000.0)
            self._memo[key] = got
        return got
