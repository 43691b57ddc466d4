"""A small day-like check of time shifting (not the ``valley bench day`` suite): 200 deferrable
jobs (10-240 min, slack 2-24 h, 0.5-16 cores x 1-4 replicas) arriving over one simulated day
on beijing-hebei, whose CPU pools services hold at 50%, run through the real loop (SQLite, the
real solver, ``run_cycle`` every 5 simulated minutes for 50 h) with time shifting on and off.
Prints, per seed, the energy and carbon of the deferrable work (at the scenario's hourly
rates, and at rates perturbed by +-10% per site and hour: the plan assumes the scenario's),
deadline misses and the cycle times.

    PYTHONPATH=. python benchmarks/time_shifting_check.py 0 1 2 3 4
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from scheduler.domain import (
    Forecast,
    Resources,
    Workload,
    WorkloadKind,
    WorkloadSpec,
    dynamic_watts,
    hour_of,
    load_scenario,
)
from scheduler.loop import CycleReport, LoopConfig, SchedulingLoop
from scheduler.solver import SolverParams
from scheduler.store import open_store

START = datetime(2025, 1, 15, 0, 0, tzinfo=timezone(timedelta(hours=8)))
STEP = timedelta(minutes=5)
HOURS = 50


class SimClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


class CycleTimes:
    def __init__(self) -> None:
        self.solve: list[float] = []
        self.cycle: list[float] = []

    def on_submitted(self, workloads: object) -> None:
        pass

    def on_state_change(self, workload: object, old: object) -> None:
        pass

    def on_cycle(self, report: CycleReport) -> None:
        self.solve.append(report.solve_seconds)
        self.cycle.append(report.cycle_seconds)


def run(shift: bool, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    sc = load_scenario()
    store = open_store(f"sqlite:///{tempfile.mkdtemp()}/v.db")
    clock, times = SimClock(), CycleTimes()
    loop = SchedulingLoop(
        store,
        sc,
        params=SolverParams(time_shifting=shift, num_workers=1),
        observers=[times],
        config=LoopConfig(solver_process=False, solve_budget_s=0.05),
        clock=clock,
    )
    loop.load()
    # background: services without an end holding half the CPU pools' cores
    cores = sum(p.count * p.node.cpu_millis for p in sc.pools if not p.node.gpus) / 1000
    background: list[WorkloadSpec] = []
    held = 0.0
    while held < 0.5 * cores:
        c, n = int(rng.integers(4, 33)), int(rng.integers(5, 21))
        r = Resources(c * 1000, c * 4096)
        background.append(WorkloadSpec("bg", resources=r, replicas=n, kind=WorkloadKind.SERVICE))
        held += c * n
    for i in range(0, len(background), 200):
        sub = store.submit("", "", background[i : i + 200], clock.now)
        loop.submitted(sub.workloads)
        loop.run_cycle()
    times.solve.clear()
    times.cycle.clear()
    jobs = []
    for t in np.sort(rng.uniform(0, 24 * 3600, 200)):
        d = int(rng.integers(10, 241)) * 60
        at = START + timedelta(seconds=float(t))
        deadline = at + timedelta(seconds=d + rng.uniform(2, 24) * 3600)
        r = Resources(int(rng.integers(1, 33)) * 500, 2048)
        spec = WorkloadSpec(
            "t", resources=r, replicas=int(rng.integers(1, 5)), kind=WorkloadKind.BATCH,
            duration_s=d, deadline=deadline,
        )  # fmt: skip
        jobs.append((at, spec))
    ids: list[str] = []
    k = 0
    while clock.now < START + timedelta(hours=HOURS):
        clock.now += STEP
        batch = []
        while k < len(jobs) and jobs[k][0] <= clock.now:
            batch.append(jobs[k][1])
            k += 1
        if batch:
            sub = store.submit("", "", batch, clock.now)
            loop.submitted(sub.workloads)
            ids += [w.id for w in sub.workloads]
        loop.run_cycle()
    out = account([store.get(wid) for wid in ids], seed)
    store.close()
    return {
        **out,
        "solve_ms_p50": 1000 * statistics.median(times.solve),
        "solve_ms_max": 1000 * max(times.solve),
        "cycle_ms_p50": 1000 * statistics.median(times.cycle),
    }


def account(workloads: list[Workload], seed: int) -> dict[str, Any]:
    """Energy and carbon of the runs at the scenario's rates and at perturbed ones."""
    sc = load_scenario()
    forecast = Forecast.of(sc)
    noise = np.random.default_rng(1000 + seed).uniform(0.9, 1.1, size=(len(sc.sites), 2, 24 * 4))
    site_ix = {s.name: i for i, s in enumerate(sc.sites)}
    totals = np.zeros(4)  # energy, carbon, energy perturbed, carbon perturbed
    misses, waits = 0, []
    for w in workloads:
        if not w.placements or w.created_at is None or w.spec.deadline is None:
            continue
        start = w.placements[0].start_time
        assert start is not None
        waits.append((start - w.created_at).total_seconds() / 3600)
        misses += start + timedelta(seconds=w.spec.duration_s) > w.spec.deadline
        for p in w.placements:
            pool = next(q for q in sc.pools if p.node.startswith(f"{q.site}/{q.name}-"))
            kw = dynamic_watts(pool, w.spec.resources) * sc.site(p.site).pue / 1000
            t0 = start.timestamp()
            t1 = t0 + w.spec.duration_s
            h = hour_of(t0)
            while h * 3600 < t1:
                kwh = kw * (min(t1, (h + 1) * 3600) - max(t0, h * 3600)) / 3600
                price, carbon = (float(v[0]) for v in forecast.hourly(p.site, h, 1))
                nz = noise[site_ix[p.site], :, h - hour_of(START)]
                totals += kwh * np.array([price, carbon, price * nz[0], carbon * nz[1]])
                h += 1
    return {
        "energy_cny": totals[0],
        "carbon_kg": totals[1],
        "energy_cny_perturbed": totals[2],
        "carbon_kg_perturbed": totals[3],
        "misses": misses,
        "mean_wait_h": statistics.mean(waits) if waits else 0.0,
    }


def main(seeds: list[int]) -> None:
    for seed in seeds:
        t = time.time()
        on, off = run(True, seed), run(False, seed)

        def less(key: str, on: dict[str, Any] = on, off: dict[str, Any] = off) -> str:
            return f"-{1 - on[key] / off[key]:.1%}"

        print(
            f"seed {seed}: deferrable carbon {less('carbon_kg')}, energy {less('energy_cny')}; "
            f"perturbed actual: carbon {less('carbon_kg_perturbed')}, energy "
            f"{less('energy_cny_perturbed')}; deadline misses {on['misses']}/{off['misses']}; "
            f"solve ms p50 {on['solve_ms_p50']:.0f}/{off['solve_ms_p50']:.0f}, max "
            f"{on['solve_ms_max']:.0f}/{off['solve_ms_max']:.0f}; cycle ms p50 "
            f"{on['cycle_ms_p50']:.0f}/{off['cycle_ms_p50']:.0f}; mean wait "
            f"{on['mean_wait_h']:.1f} h; {time.time() - t:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main([int(s) for s in sys.argv[1:]] or [0])
