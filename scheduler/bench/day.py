"""``valley bench day``: the Zhongguancun mix arriving over simulated hours, through the real
scheduling loop, for Valley with and without time shifting and its peers.

Arrivals (``day_arrivals``): Poisson with a daytime peak, durations and deadlines from stated
distributions; a third of the batch work (CPU batch and GPU training) deferrable, its slack
beyond its duration uniform in 2-24 h. The cluster is the default scenario scaled
(``scenario.scaled_for``) so that the arrivals fill ``--load`` of its capacity on average and
the latency-critical work ``--critical-share`` of E-Town's CPU nodes at its busiest hour.

The loop (``SchedulingLoop``, a SQLite store in a temporary directory, the solver in this
process) runs on a simulated clock: every ``--cycle-s`` simulated seconds (300) the arrivals
since the last cycle are submitted, stamped with the cycle's time, and one cycle runs
(``SchedulingLoop.step``: completions due, the batch solved with a ``--time-limit`` budget,
committed), with no sleeping. After the last hour of arrivals, cycles go on until nothing is
pending (at most 48 simulated hours more). Every policy gets the same arrivals and the same
actual price and carbon profile.

Policies: ``valley`` (time shifting: ``SolverParams.time_shifting``), ``valley-now`` (Valley
starting everything when placed), ``kube``, ``cheapest-first`` (and any other solver policy);
``--rebalance`` adds ``valley+rebalance`` (``valley`` with the loop's periodic rebalance).

The snapshot floor (``--floor-every-h``, every 6 simulated hours with ``--rebalance``): at each
sample, the cluster's objective per hour (energy and carbon at the scenario's carbon price)
over the floor no placement of the work running then can beat (``floors.objective_floor``):
how close each policy keeps the cluster to the best it could be at that instant. Its solves
are left out of ``wall_seconds``.

Accounting (``day_account``): from the store's final records, each replica running from its
start for its duration, priced with the actual profile (the forecast +-10%, seeded), whole
cluster and deferrable work alone; the floor of the deferrable work (each job at its cheapest
feasible hour and site, ignoring capacity); deadline misses and mean deferral; violations of
every hard rule at every instant (``checker.check_over_time``).
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import statistics
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click

from scheduler.bench import report
from scheduler.bench.checker import check_over_time, count_by_rule
from scheduler.bench.day_account import (
    Rates,
    by_site,
    deferrable_floor,
    hourly_series,
    is_deferrable,
    ledger,
    replica_start,
    runs_of,
    scenario_rates,
    seconds,
    segments,
    timing,
)
from scheduler.bench.day_arrivals import START, Arrival, day_demand, generate_arrivals
from scheduler.bench.day_plot import plot
from scheduler.bench.scenario import instance_options, scaled_for
from scheduler.bench.workload_mix import SHAPES_FILE, load_shapes
from scheduler.domain import (
    DEFAULT_SCENARIO,
    Cluster,
    ReplicaPlacement,
    Scenario,
    Workload,
    WorkloadState,
    load_scenario,
)
from scheduler.loop import CycleReport, LoopConfig, SchedulingLoop
from scheduler.loop.draining import cluster_cost
from scheduler.solver import POLICIES as SOLVER_POLICIES
from scheduler.solver import SolverParams
from scheduler.solver.floors import objective_floor
from scheduler.store import Store, open_store

POLICIES = ("valley", "valley-now", "kube", "cheapest-first")
# Valley (time shifting) with a rebalance every 30 minutes of at most 0.8% of the replicas
# held then: under 2% of the running replicas moved per hour (issue 14)
REBALANCED = "valley+rebalance"
# violations a JSON row shows in full (``violation_examples``)
VIOLATION_EXAMPLES = 10
REBALANCE_EVERY_S = 1800.0
REBALANCE_SHARE = 0.008
KNOWN_POLICIES = (
    *POLICIES,
    REBALANCED,
    *(p for p in SOLVER_POLICIES if p not in POLICIES),
)
DRAIN_HOURS = 48  # cycles after the last arrivals, at most, until nothing is pending
FLOOR_EVERY_H = 6.0  # simulated hours between samples of the snapshot floor
FLOOR_TIME_LIMIT_S = 1.0  # each floor's solve
DEFAULT_PER_DAY = 10_000

COLUMNS = (
    "policy",
    "hours",
    "arrivals",
    "placed",
    "deadline_misses",
    "slo_violations",
    "violations",
    "energy_cny",
    "carbon_kg",
    "energy_vs_kube",
    "carbon_vs_kube",
    "deferrable_energy_cny",
    "deferrable_carbon_kg",
    "deferrable_energy_floor_cny",
    "deferrable_carbon_floor_kg",
    "deferrable_carbon_vs_now",
    "mean_deferral_s",
    "above_floor_mean",
    "cycles",
    "wall_seconds",
)


def solver_params(policy: str, time_limit: float) -> SolverParams:
    """The solver's parameters for a policy of this suite. No MIP bound: the suite reports no
    gap, and the bound's thread would only take CPU from the packing within the budget."""
    base = "valley" if policy in ("valley-now", REBALANCED) else policy
    shifting = policy in ("valley", REBALANCED)
    return SolverParams(
        policy=base, time_limit_s=time_limit, mip_bound=False, time_shifting=shifting
    )


class SimClock:
    """The loop's clock: the simulated time, moved by the driver."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class _Cycles:
    """A ``LoopObserver`` that keeps each cycle's solve time, and each move's workload before
    it (the accounting charges a moved replica's node up to the move)."""

    def __init__(self) -> None:
        self.solve_s: list[float] = []
        self.moves: dict[str, list[tuple[datetime, tuple[ReplicaPlacement, ...]]]] = {}
        self.moved_replicas = 0

    def on_moved(self, before: Workload, after: Workload, at: datetime) -> None:
        self.moves.setdefault(before.id, []).append((at, before.placements))
        was = {p.replica: p.node for p in before.placements}
        self.moved_replicas += sum(was.get(p.replica) != p.node for p in after.placements)

    def on_submitted(self, workloads: Sequence[Workload]) -> None:
        pass

    def on_cycle(self, report: CycleReport) -> None:
        self.solve_s.append(report.solve_seconds)

    def on_state_change(self, workload: Workload, old: WorkloadState) -> None:
        pass


def submission_ticks(arrivals: Sequence[Arrival], cycle_s: float) -> list[int]:
    """The cycle (1, 2, ...) at which each arrival is submitted: the first at or after it."""
    return [max(1, math.ceil(a.at_s / cycle_s)) for a in arrivals]


def simulate(
    policy: str,
    arrivals: Sequence[Arrival],
    scenario: Scenario,
    workdir: str,
    *,
    hours: int,
    cycle_s: float,
    time_limit: float,
    seed: int,
    start: datetime = START,
    bar: bool = True,
    floor_every_h: float = 0.0,
) -> tuple[list[Workload], dict[str, Any]]:
    """Run the arrivals through the loop under ``policy``; the store's final records of every
    workload, and the loop's figures. ``bar``: a progress bar on a terminal. Every
    ``floor_every_h`` simulated hours of arrivals (0: never), the cluster's hourly objective is
    compared with the floor of the work running then (``_Floors``)."""
    store = open_store(f"sqlite:///{workdir}/{policy}.db")
    clock = SimClock(start)
    cycles = _Cycles()
    config = LoopConfig(
        solver_process=False,
        solve_budget_s=time_limit,
        seed=seed,
        rebalance_every_s=REBALANCE_EVERY_S if policy == REBALANCED else 0.0,
        rebalance_move_share=REBALANCE_SHARE,
        # the day compares placement policies on the same work: preemption (Valley's loop,
        # whatever the policy) would change which work runs when, so it stays off here
        preemption=False,
    )
    loop = SchedulingLoop(
        store, scenario, solver_params(policy, time_limit), [cycles], config, clock=clock
    )
    floors = _Floors(loop, int(floor_every_h * 3600 // cycle_s), seed)
    try:
        records, figures = _drive(
            loop, store, clock, arrivals, hours, cycle_s, policy if bar else None, cycles, floors
        )
    finally:
        store.close()
    return records, figures | floors.figures()


def _drive(
    loop: SchedulingLoop,
    store: Store,
    clock: SimClock,
    arrivals: Sequence[Arrival],
    hours: int,
    cycle_s: float,
    bar: str | None,
    cycles: _Cycles,
    floors: _Floors,
) -> tuple[list[Workload], dict[str, Any]]:
    """``simulate``'s cycles, with a progress bar named ``bar`` if given."""
    start = clock.now
    loop.load()
    ticks = submission_ticks(arrivals, cycle_s)
    last = max(int(hours * 3600 // cycle_s), ticks[-1] if ticks else 0)
    drain = last + int(DRAIN_HOURS * 3600 // cycle_s)
    t0 = time.perf_counter()
    i = 0
    k = 0
    steps: Iterator[int] = iter(range(1, last + 1))
    if bar:
        steps = report.progress(steps, total=last, desc=bar)
    while True:
        k = next(steps, k + 1)  # past the last arrivals (no bar): draining
        clock.now = start + timedelta(seconds=k * cycle_s)
        j = i
        while j < len(ticks) and ticks[j] <= k:
            j += 1
        if j > i:
            sub = store.submit("", "", [a.spec for a in arrivals[i:j]], clock.now)
            loop.submitted(sub.workloads)
            i = j
        loop.run_cycle()
        if k <= last:
            floors.sample(k, clock.now)
        if k >= last and (k >= drain or not _pending(store)):
            break
    wall = time.perf_counter() - t0 - floors.seconds  # the simulation's own time
    records = _all_workloads(store)
    solve_s = cycles.solve_s
    return records, {
        "cycles": k,
        "simulated_hours": k * cycle_s / 3600.0,
        "solves": len(solve_s),
        "solve_s_p50": statistics.median(solve_s) if solve_s else None,
        "solve_s_max": max(solve_s, default=None),
        "wall_seconds": wall,
        "moved_replicas": cycles.moved_replicas,
        "moves_per_hour": cycles.moved_replicas / max(1.0, k * cycle_s / 3600.0),
        "_moves": cycles.moves,
    }


class _Floors:
    """How close a policy keeps the cluster to the snapshot floor over the day: every
    ``every`` cycles, the cluster's objective per hour then (energy and carbon at the
    scenario's carbon price, as a rebalance prices it) against the floor no placement of the
    work running then can beat (``floors.objective_floor``, Valley's proven bound, the same
    for every policy). Samples where no bound was proven in the time are left out."""

    def __init__(self, loop: SchedulingLoop, every: int, seed: int) -> None:
        self.loop, self.every, self.seed = loop, every, seed
        self.above: list[float] = []  # objective / floor - 1, per sample
        self.seconds = 0.0

    def sample(self, k: int, now: datetime) -> None:
        if self.every <= 0 or k % self.every:
            return
        t0 = time.perf_counter()
        work = self.loop.running_work(now)
        if work.workloads:
            view = self.loop.snapshot()
            cost = cluster_cost(view.cluster, view.hour, view.month)
            price = view.scenario.carbon_price_cny_per_tonne / 1000.0
            objective = cost.energy_cny_per_hour + cost.carbon_kg_per_hour * price
            floor = objective_floor(work, SolverParams(), FLOOR_TIME_LIMIT_S, self.seed)
            if floor is not None and floor > 0:
                self.above.append(objective / floor - 1.0)
        self.seconds += time.perf_counter() - t0

    def figures(self) -> dict[str, Any]:
        return {
            "floor_samples": len(self.above),
            "above_floor_mean": statistics.fmean(self.above) if self.above else None,
            "above_floor_best": min(self.above, default=None),
            "above_floor_worst": max(self.above, default=None),
            "floor_seconds": self.seconds,
        }


def _pending(store: Store) -> bool:
    return store.counts().by_state.get(WorkloadState.PENDING, 0) > 0


def _all_workloads(store: Store) -> list[Workload]:
    out: list[Workload] = []
    after = 0
    while True:
        page = store.list_workloads("", (), after, 5000)
        out.extend(page.workloads)
        if page.next_after is None:
            return out
        after = page.next_after


# --------------------------------------------------------------------------- one row


def measure(
    policy: str,
    records: Sequence[Workload],
    scenario: Scenario,
    rates: Rates,
    start: datetime,
    hours: int,
    floor: tuple[float, float],
    moves: Mapping[str, Sequence[tuple[datetime, tuple[ReplicaPlacement, ...]]]] | None = None,
    gpu_floor: tuple[float, float] = (0.0, 0.0),
) -> dict[str, Any]:
    """One row from the final records (see the module docstring); a moved workload counts on
    each node it ran on, for the time it ran there (``moves``: its placements before each).
    ``gpu_floor``: the floor of the deferrable GPU work alone."""
    cluster = Cluster(scenario)
    parts, part_spans = segments(records, moves or {}, start)
    runs = runs_of(parts, cluster, start, part_spans)
    book = ledger(runs, cluster, rates)
    kwh, cny, kg = book.total()
    _, d_cny, d_kg = book.total("deferrable")
    # the deferrable GPU work's share of that (its attributed power: the ledger of it alone)
    gpu_work = [w for w in parts if is_deferrable(w.spec) and w.spec.resources.wants_gpu]
    gpu_runs = runs_of(gpu_work, cluster, start, part_spans)
    _, g_cny, g_kg = ledger(gpu_runs, cluster, rates).total("deferrable")
    placed = [w for w in records if w.placements and w.placed_at is not None]
    checked = [w for w in parts if w.placements and w.placed_at is not None]
    specs = {w.id: w.spec for w in checked}
    spans = {
        w.id: part_spans.get(w.id)
        or [
            (s := seconds(replica_start(w, i) or w.placed_at, start), s + w.spec.duration_s)
            for i in range(len(w.placements))
        ]
        for w in checked
        if w.placed_at is not None
    }
    params = solver_params(policy, 1.0)
    found = check_over_time(
        scenario,
        specs,
        {w.id: w.placements for w in checked},
        spans,
        cpu_on_gpu_nodes=params.cpu_on_gpu_nodes,
    )
    violations = count_by_rule(found)
    slo = violations.pop("slo", 0)
    states = [w.state for w in records]
    return {
        "policy": policy,
        "hours": hours,
        "arrivals": len(records),
        "arrivals_digest": arrivals_digest(records),
        "placed": len(placed),
        "placed_replicas": sum(len(w.placements) for w in placed),
        "unschedulable": states.count(WorkloadState.UNSCHEDULABLE),
        "pending_at_end": states.count(WorkloadState.PENDING),
        **timing(records, start),
        "slo_violations": slo,
        "violations": sum(violations.values()),
        "violation_rules": violations,
        # the first few, to find a rare one again (a run's violations can depend on its timing)
        "violation_examples": [str(v) for v in found[:VIOLATION_EXAMPLES]],
        "energy_kwh": kwh,
        "energy_cny": cny,
        "carbon_kg": kg,
        "deferrable_energy_cny": d_cny,
        "deferrable_carbon_kg": d_kg,
        "deferrable_energy_floor_cny": floor[0],
        "deferrable_carbon_floor_kg": floor[1],
        "deferrable_gpu_energy_cny": g_cny,
        "deferrable_gpu_carbon_kg": g_kg,
        "deferrable_gpu_energy_floor_cny": gpu_floor[0],
        "deferrable_gpu_carbon_floor_kg": gpu_floor[1],
        "sites": by_site(book),
        "hourly": hourly_series(book),
    }


def arrivals_digest(records: Sequence[Workload]) -> str:
    """A digest of what arrived when (submission time and spec of every workload): equal for
    every policy of a run."""
    digest = hashlib.sha256()
    for w in sorted(records, key=lambda w: (w.created_at or START, w.spec.name)):
        created = w.created_at.isoformat() if w.created_at else ""
        digest.update(f"{created}|{w.spec!r}\n".encode())
    return digest.hexdigest()[:16]


def _compare(rows: list[dict[str, Any]]) -> None:
    """Each row against ``kube`` (whole cluster) and ``valley-now`` (deferrable work), as
    fractions (-0.25 = 25% less), and the share of the potential saving achieved."""
    by = {r["policy"]: r for r in rows}
    kube, now, valley = by.get("kube"), by.get("valley-now"), by.get("valley")
    for r in rows:
        for col, key, ref in (
            ("energy_vs_kube", "energy_cny", kube),
            ("carbon_vs_kube", "carbon_kg", kube),
            ("energy_vs_valley", "energy_cny", valley),
            ("carbon_vs_valley", "carbon_kg", valley),
            ("deferrable_energy_vs_now", "deferrable_energy_cny", now),
            ("deferrable_carbon_vs_now", "deferrable_carbon_kg", now),
        ):
            r[col] = r[key] / ref[key] - 1.0 if ref is not None and ref[key] > 0 else None
        for col, key, floor in (
            ("energy_share_of_potential", "deferrable_energy_cny", "deferrable_energy_floor_cny"),
            ("carbon_share_of_potential", "deferrable_carbon_kg", "deferrable_carbon_floor_kg"),
        ):
            possible = now[key] - r[floor] if now is not None else 0.0
            r[col] = (now[key] - r[key]) / possible if now is not None and possible > 0 else None


# --------------------------------------------------------------------------- the run


def instance(
    hours: int,
    per_day: float,
    seed: int,
    load: float,
    critical_share: float,
    shapes_path: str | None,
    scenario: str,
) -> tuple[tuple[Arrival, ...], Scenario]:
    """The arrivals and the cluster sized for them."""
    base = load_scenario(scenario)
    arrivals = generate_arrivals(hours, per_day, seed, load_shapes(shapes_path))
    scaled = scaled_for(base, day_demand(base, arrivals, hours), load, critical_share)
    return arrivals, scaled


def run(
    policies: Sequence[str],
    *,
    hours: int = 72,
    per_day: float = DEFAULT_PER_DAY,
    seed: int = 0,
    cycle_s: float = 300.0,
    time_limit: float = 0.05,
    load: float = 0.5,
    critical_share: float = 0.9,
    shapes_path: str | None = None,
    scenario: str = DEFAULT_SCENARIO,
    jobs: int = 1,
    floor_every_h: float = 0.0,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every policy on the same arrivals (``jobs`` policies at a time, in processes); the
    rows and what the instance was."""
    arrivals, scaled = instance(hours, per_day, seed, load, critical_share, shapes_path, scenario)
    ticks = submission_ticks(arrivals, cycle_s)
    submitted = [(t * cycle_s, a.spec) for t, a in zip(ticks, arrivals, strict=True)]
    # rates for every hour a replica can run in: the drain, a deadline, a duration beyond it
    rates = scenario_rates(scaled, START, hours + DRAIN_HOURS + 48, seed)
    floor = deferrable_floor(submitted, scaled, rates, START)
    on_gpus = [(t, spec) for t, spec in submitted if spec.resources.wants_gpu]
    gpu_floor = deferrable_floor(on_gpus, scaled, rates, START)
    setting = _Setting(
        arrivals, scaled, rates, floor, hours, cycle_s, time_limit, seed, gpu_floor, floor_every_h
    )
    # a RAM disk where there is one: the store's commits are fsynced, the benchmark measures
    # scheduling, not the disk
    shm = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(prefix="valley-bench-day-", dir=shm) as tmp:
        if jobs == 1:
            rows = [policy_row(setting, policy, tmp) for policy in policies]
        else:
            spawn = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=spawn) as pool:
                n = len(policies)
                rows = list(pool.map(policy_row, [setting] * n, policies, [tmp] * n, [False] * n))
    _compare(rows)
    info = {
        "nodes": {p.key: p.count for p in scaled.pools},
        "arrivals": len(arrivals),
        "deferrable": sum(a.deferrable for a in arrivals),
    }
    return rows, info


@dataclass(frozen=True)
class _Setting:
    """What every policy of a run shares."""

    arrivals: tuple[Arrival, ...]
    scenario: Scenario
    rates: Rates
    floor: tuple[float, float]
    hours: int
    cycle_s: float
    time_limit: float
    seed: int
    gpu_floor: tuple[float, float] = (0.0, 0.0)
    floor_every_h: float = 0.0


def policy_row(setting: _Setting, policy: str, workdir: str, bar: bool = True) -> dict[str, Any]:
    """One policy simulated and measured: its row."""
    records, figures = simulate(
        policy,
        setting.arrivals,
        setting.scenario,
        workdir,
        hours=setting.hours,
        cycle_s=setting.cycle_s,
        time_limit=setting.time_limit,
        seed=setting.seed,
        bar=bar,
        floor_every_h=setting.floor_every_h,
    )
    t0 = time.perf_counter()
    moves = figures.pop("_moves")
    row = measure(
        policy,
        records,
        setting.scenario,
        setting.rates,
        START,
        setting.hours,
        setting.floor,
        moves,
        setting.gpu_floor,
    )
    row.update(figures)
    # replicas running at a time, on average over the simulated time: the moves' yardstick
    seconds_run = sum(len(w.placements) * w.spec.duration_s for w in records if w.placements)
    running = seconds_run / max(1.0, row["simulated_hours"] * 3600.0)
    row["moved_share_per_hour"] = row["moves_per_hour"] / running if running else 0.0
    row["measure_seconds"] = time.perf_counter() - t0
    return row


# --------------------------------------------------------------------------- command


@click.command("day")
@click.option(
    "--hours",
    type=click.IntRange(1, 24 * 14),
    default=72,
    show_default=True,
    help="simulated hours of arrivals",
)
@report.seed_option
@click.option(
    "--arrivals-per-day",
    "per_day",
    type=click.FloatRange(1, 1_000_000),
    default=DEFAULT_PER_DAY,
    show_default=True,
    help="mean workloads arriving per simulated day (the cluster is sized for them)",
)
@click.option(
    "--policies",
    default=",".join(POLICIES),
    show_default=True,
    help=f"comma-separated, of {', '.join(KNOWN_POLICIES)}",
)
@click.option(
    "--cycle-s",
    type=click.FloatRange(1, 3600),
    default=300.0,
    show_default=True,
    help="simulated seconds between scheduling cycles",
)
@click.option(
    "--time-limit",
    type=click.FloatRange(0, min_open=True),
    default=0.05,
    show_default=True,
    help="seconds per cycle's solve (the loop's budget; valley serve: 0.05)",
)
@instance_options(
    "mean demand as a share of capacity",
    "latency-critical demand at its busiest hour as a share of its sites' CPU nodes",
)
@click.option(
    "--jobs",
    type=click.IntRange(1, 8),
    default=1,
    show_default=True,
    help="policies simulated at a time (processes; each solve's time limit is wall time)",
)
@click.option(
    "--rebalance",
    is_flag=True,
    help=f"also run {REBALANCED} (valley with the loop's periodic rebalance) and compare "
    f"every policy with the snapshot floor every {FLOOR_EVERY_H:g} simulated hours",
)
@click.option(
    "--floor-every-h",
    type=click.FloatRange(0),
    default=None,
    help="simulated hours between comparisons of the cluster with the floor of the work "
    f"running then (0: none; default {FLOOR_EVERY_H:g} with --rebalance, else 0)",
)
@report.output_option
@report.plot_option
def command(
    hours: int,
    seed: int,
    per_day: float,
    policies: str,
    cycle_s: float,
    time_limit: float,
    load: float,
    critical_share: float,
    shapes_path: str | None,
    scenario: str,
    jobs: int,
    rebalance: bool,
    floor_every_h: float | None,
    output: str,
    plot_path: str | None,
) -> None:
    """The mix arriving over simulated hours through the real loop: cost and carbon of time
    shifting against Valley without it and the peers."""
    chosen = [p.strip() for p in policies.split(",") if p.strip()]
    if rebalance and REBALANCED not in chosen:
        chosen.append(REBALANCED)
    if floor_every_h is None:
        floor_every_h = FLOOR_EVERY_H if rebalance else 0.0
    unknown = [p[:40] for p in chosen if p not in KNOWN_POLICIES]
    if unknown or not chosen:
        raise click.BadParameter(
            f"unknown policies {unknown} (known: {', '.join(KNOWN_POLICIES)})",
            param_hint="--policies",
        )
    rows, info = run(
        chosen,
        hours=hours,
        per_day=per_day,
        seed=seed,
        cycle_s=cycle_s,
        time_limit=time_limit,
        load=load,
        critical_share=critical_share,
        shapes_path=shapes_path,
        scenario=scenario,
        jobs=jobs,
        floor_every_h=floor_every_h,
    )
    params = {
        "hours": hours,
        "arrivals_per_day": per_day,
        "policies": chosen,
        "seed": seed,
        "cycle_s": cycle_s,
        "time_limit_s": time_limit,
        "load": load,
        "critical_share": critical_share,
        "scenario": scenario,
        "shapes": str(Path(shapes_path)) if shapes_path else SHAPES_FILE.name,
        "start": START.isoformat(),
        "jobs": jobs,
        "floor_every_h": floor_every_h,
        **info,
    }
    if output == "json":
        report.emit("day", params, rows, output)
    else:
        shown = {k: v for k, v in params.items() if k != "nodes"}
        report.emit("day", shown, rows, output, COLUMNS)
        click.echo("nodes: " + ", ".join(f"{k} {c}" for k, c in info["nodes"].items()))
    if plot_path:
        plot(rows, hours, plot_path)
