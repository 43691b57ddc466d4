"""The arrivals of ``valley bench day``: the Zhongguancun mix arriving over simulated hours.

Distributions (the benchmarks README states the same):

- **When**: a Poisson process whose rate follows the local hour, ``rate(h) = mean x (1 + 0.5 x
  cos(2 pi (h - 14) / 24))``: 1.5x the mean at 14:00, 0.5x at 02:00, the day's mean is the
  mean (``--arrivals-per-day`` / 24 per hour). Drawn per simulated minute (a Poisson count at
  the minute's rate, each arrival uniform within its minute).
- **What**: the workloads of ``workload_mix.generate_mix`` in its order (the classes by share
  of requested cores, the openb request shapes, replicas, SLOs, residency, GANG and SPREAD as
  ``bench scenario`` has them), one per arrival.
- **How long**: batch 10-240 minutes uniform (whole minutes; the mix's), GPU training 1-24 h
  uniform (whole hours; the mix's), services (interactive, regional, GPU inference) 30-240
  minutes uniform (whole minutes): services live about as long as batch, so each class's share
  of the demand at any moment stays its share of the mix's cores.
- **Deadlines**: a third of the batch workloads - ``batch`` and ``gpu-training`` alike, each
  with probability 1/3 - are deferrable: deadline = arrival + duration + slack, slack uniform
  between 2 and 24 hours (whole seconds). No other workload has a deadline (the mix's own
  deadlines are dropped). GPU training draws from a random stream of its own, so the other
  classes' arrivals are those of a mix without deferrable GPU work.

Every policy gets the same arrivals for a seed. ``day_demand`` sizes the cluster for them
(``scenario.scaled_for``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import numpy as np

from scheduler.bench.day_account import is_deferrable, per_hour
from scheduler.bench.scenario import Demand, is_latency_critical
from scheduler.bench.workload_mix import EPOCH, Shape, generate_mix
from scheduler.domain import Resources, Scenario, WorkloadSpec
from scheduler.solver import PendingWorkload

# local midnight of a January day: no critical-peak tariff, as in ``bench scenario``
START = EPOCH.replace(hour=0)
PEAK_HOUR = 14.0
PEAK_AMPLITUDE = 0.5
DEFERRABLE_SHARE = 1.0 / 3.0
DEFERRABLE_CLASSES = ("batch", "gpu-training")
SLACK_HOURS = (2.0, 24.0)
SERVICE_MINUTES = (30, 240)
SERVICE_CLASSES = ("interactive", "regional", "gpu-inference")
_MEAN_REPLICAS = 6.06  # of the mix's replicas-per-workload distribution


@dataclass(frozen=True, slots=True)
class Arrival:
    """One workload arriving ``at_s`` seconds after the start of the run."""

    at_s: float
    spec: WorkloadSpec

    @property
    def deferrable(self) -> bool:
        return is_deferrable(self.spec)


def rate_shape(local_hour: np.ndarray | float) -> np.ndarray:
    """The arrival rate at a local hour (fractional), relative to the day's mean."""
    return 1.0 + PEAK_AMPLITUDE * np.cos(2.0 * np.pi * (np.asarray(local_hour) - PEAK_HOUR) / 24.0)


def generate_arrivals(
    hours: int,
    per_day: float,
    seed: int = 0,
    shapes: Sequence[Shape] | None = None,
    start: datetime = START,
) -> tuple[Arrival, ...]:
    """The arrivals over ``hours`` simulated hours from ``start``, in time order (module
    docstring); deterministic for a seed."""
    rng = np.random.default_rng([seed, 7])
    minutes = np.arange(hours * 60)
    local = (start.hour + start.minute / 60.0 + (minutes + 0.5) / 60.0) % 24.0
    counts = rng.poisson(per_day / 1440.0 * rate_shape(local))
    at_s = np.sort((np.repeat(minutes, counts) + rng.random(int(counts.sum()))) * 60.0)
    mix = _workloads(len(at_s), seed, shapes)
    gpu_rng = np.random.default_rng([seed, 13])
    out = []
    for t, w in zip(at_s, mix, strict=False):
        at = start + timedelta(seconds=float(t))
        out.append(Arrival(float(t), _timed(w.spec, at, rng, gpu_rng)))
    return tuple(out)


def _workloads(n: int, seed: int, shapes: Sequence[Shape] | None) -> list[PendingWorkload]:
    """The first ``n`` workloads of a mix large enough to hold them."""
    replicas = max(16, math.ceil(n * _MEAN_REPLICAS * 1.1))
    while True:
        mix = generate_mix(replicas, seed, shapes)
        if len(mix) >= n:
            return list(mix[:n])
        replicas *= 2


def _timed(
    spec: WorkloadSpec,
    arrival: datetime,
    rng: np.random.Generator,
    gpu_rng: np.random.Generator,
) -> WorkloadSpec:
    cls = spec.labels.get("class", "")
    if cls in SERVICE_CLASSES:
        low, high = SERVICE_MINUTES
        return replace(spec, duration_s=int(rng.integers(low, high + 1)) * 60, deadline=None)
    draw = gpu_rng if cls == "gpu-training" else rng
    if cls in DEFERRABLE_CLASSES and draw.random() < DEFERRABLE_SHARE:
        slack = draw.uniform(*SLACK_HOURS) * 3600.0
        deadline = arrival + timedelta(seconds=round(spec.duration_s + slack))
        return replace(spec, deadline=deadline)
    return replace(spec, deadline=None)


# --------------------------------------------------------------------------- sizing


def day_demand(scenario: Scenario, arrivals: Sequence[Arrival], hours: int) -> Demand:
    """The demand the cluster is sized for (``scaled_for``): CPU and GPU work as their
    mean over the run if every workload started on arrival (resource x duration summed over the
    arrivals, divided by the run's length, as if the run repeated: the steady state), and the
    latency-critical work at its busiest hour of that steady state, so that ``--critical-share``
    of its sites is what the daily peak needs."""
    horizon = hours * 3600.0
    cpu = np.zeros(3)
    gpu = np.zeros(3)
    crit_sites: set[str] = set()
    crit_start, crit_end, crit_value = [], [], []
    for a in arrivals:
        s = a.spec
        n = s.replica_count
        r = s.resources
        vec = np.array([r.cpu_millis, r.memory_mib, r.gpu_demand_millis], dtype=float) * n
        (gpu if r.wants_gpu else cpu)[:] += vec * s.duration_s / horizon
        if not r.wants_gpu and is_latency_critical(scenario, s):
            crit_sites |= {
                site.name
                for site in scenario.sites
                if site.latency_ms[s.origin] <= s.max_latency_ms
            }
            crit_start.append(a.at_s)
            crit_end.append(a.at_s + s.duration_s)
            crit_value.append(vec)
    critical = np.zeros(3)
    if crit_value:
        values = np.asarray(crit_value)
        starts, ends = np.asarray(crit_start), np.asarray(crit_end)
        # wrapped: what runs past the end of the run counts at its start, as in the next cycle
        spill = math.ceil(float(ends.max()) / 3600.0)
        profile = (
            np.stack([per_hour(starts, ends, values[:, k], spill) for k in range(3)], axis=1)
            / 3600.0
        )
        wrapped = np.zeros((hours, 3))
        np.add.at(wrapped, np.arange(spill) % hours, profile)
        critical = wrapped[int(np.argmax(wrapped[:, 0]))]
    return Demand(
        critical=_resources(critical),
        critical_sites=frozenset(crit_sites),
        cpu=_resources(cpu),
        gpu=_resources(gpu),
    )


def _resources(vec: np.ndarray) -> Resources:
    return Resources(round(vec[0]), round(vec[1]), 0, round(vec[2]))


# --------------------------------------------------------------------------- statistics


def arrival_stats(arrivals: Sequence[Arrival], hours: int, start: datetime = START) -> dict:
    """What the arrivals are, to check against the stated distributions: arrivals per day,
    the ratio of the busiest to the quietest local hour, the deferrable share of batch
    workloads (``batch`` and ``gpu-training``), and the least and largest slack beyond duration
    (hours)."""
    batch = [a for a in arrivals if a.spec.labels.get("class") in DEFERRABLE_CLASSES]
    deferrable = [a for a in batch if a.deferrable]
    slack = [
        (a.spec.deadline - start).total_seconds() - a.at_s - a.spec.duration_s
        for a in deferrable
        if a.spec.deadline is not None
    ]
    by_hour = np.zeros(24)
    for a in arrivals:
        by_hour[int((start.hour + a.at_s / 3600.0) % 24)] += 1
    return {
        "arrivals": len(arrivals),
        "per_day": len(arrivals) * 24.0 / hours,
        "peak_to_trough": float(by_hour.max() / max(1.0, by_hour.min())),
        "busiest_hour": int(np.argmax(by_hour)),
        "batch": len(batch),
        "deferrable": len(deferrable),
        "deferrable_share_of_batch": len(deferrable) / len(batch) if batch else 0.0,
        "slack_h_min": min(slack) / 3600.0 if slack else None,
        "slack_h_max": max(slack) / 3600.0 if slack else None,
    }
