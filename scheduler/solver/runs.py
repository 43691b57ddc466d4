"""What a run costs: the mean price and carbon intensity of the hours it takes, per site, from
the problem's forecast.

Work placed now runs on for hours - a batch job for its duration, a service until it is
cancelled - while the current hour's rates hold for one hour. Where a problem carries a clock
and a forecast (``priced_over_runs``: the loop's problems, the day benchmark's), the objective
counts each replica placed now at the mean rates of its run (``run_seconds``: its duration, or
``OPEN_ENDED_S`` for work without one), so that a service arriving at an hour when the dear
site happens to be the cheaper one is not placed there for good (the module docstring of
``scheduler.solver.objective``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from scheduler.domain import SiteRates, WorkloadSpec
from scheduler.domain.forecast import HOUR_S, hour_of
from scheduler.solver.problem import Problem

# how long work without a duration (a service that runs until cancelled) is counted on to run:
# a day of the forecast, every hour of its price cycle once
OPEN_ENDED_S = 24 * 3600
# the longest run priced: a longer one (a duration may be ten years) is priced as its first
# week, whose mean is that of whole days already, and the forecast is read for a week at most
LONGEST_PRICED_S = 7 * 24 * 3600


def run_seconds(spec: WorkloadSpec) -> int:
    """The seconds a replica of ``spec`` placed now is counted on to run (and priced over)."""
    return min(spec.duration_s, LONGEST_PRICED_S) if spec.duration_s > 0 else OPEN_ENDED_S


def priced_over_runs(problem: Problem) -> bool:
    """Whether the problem's work is priced over its runs: it carries a clock and a forecast."""
    return problem.now is not None and problem.forecast is not None


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
    current hour). Runs must end by ``end_hour`` (absolute); the forecast is read up to it."""

    def __init__(self, problem: Problem, cprice: float, end_hour: int) -> None:
        assert problem.now is not None and problem.forecast is not None
        self.base = hour_of(problem.now)
        n = max(1, end_hour - self.base)
        self.cprice = cprice
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

    @classmethod
    def from_now(cls, problem: Problem, cprice: float, longest_s: float) -> RunRates:
        """Rates for runs from ``problem.now`` of at most ``longest_s`` seconds."""
        assert problem.now is not None
        return cls(problem, cprice, hour_of(problem.now) + 2 + math.ceil(longest_s / HOUR_S))

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


class RunMoney:
    """CNY per IT watt-hour (energy and priced carbon, at the site's PUE) of a site over the
    next ``seconds`` from ``problem.now``: the mean of ``runs`` over the run where the problem
    is priced over runs (``runs`` not None: its span covers the runs asked about), else the
    current hour's rates (``hourly``)."""

    def __init__(
        self,
        problem: Problem,
        cprice: float,
        hourly: Mapping[str, SiteRates],
        runs: RunRates | None,
    ) -> None:
        self.cprice = cprice
        self.now = problem.now.timestamp() if problem.now is not None else 0.0
        self.hourly = hourly
        self.runs = runs

    def __call__(self, site: str, seconds: float) -> float:
        if self.runs is None or seconds <= 0:
            return self.hourly[site].money_per_it_watt(self.cprice)
        return self.runs.cost(site, self.now, int(seconds)).money
