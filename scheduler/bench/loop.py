"""``valley bench loop``: how far one leader's scheduling loop goes, on its real store.

The generated workload mix (``workload_mix``) of ``--replicas`` replicas is submitted to the
store in requests of ``--submit-batch`` workloads; then a leader takes the store's lease (on
PostgreSQL: the advisory lock and a new term, its commits fenced by it), rebuilds its view from
the store and places the backlog on the scenario as it is (``beijing-hebei``: 6,144 nodes), its
solver in a child process as in ``valley serve``. ``--store`` is repeatable, a row each:
``sqlite`` (a temporary file) or the ``postgresql://`` URL of an empty database.

Rows: submit_ms_p50/_p99 (one request's commit), load_s (the leader's rebuild from the store),
place_s (from the loop's start to the backlog placed: solver warm-up included), cycles,
cycle_s_p50/_max, solve_s_p50/_max, commit_s_p50/_max (a cycle's store commit), replicas per
cycle, and what became of the workloads (placed, unschedulable, still pending).
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click

from scheduler.bench.report import emit, output_option, seed_option, store_kind, stores_option
from scheduler.bench.workload_mix import generate_mix
from scheduler.domain import Workload, WorkloadState, load_scenario
from scheduler.loop import CycleReport, LoopConfig, SchedulingLoop
from scheduler.store import CycleCommit, CycleOutcome, open_store
from scheduler.store.leadership import FencedStore
from scheduler.store.sql import SqlStore

COLUMNS = (
    "store",
    "nodes",
    "workloads",
    "replicas",
    "submit_ms_p50",
    "submit_ms_p99",
    "load_s",
    "place_s",
    "cycles",
    "cycle_s_p50",
    "cycle_s_max",
    "solve_s_p50",
    "solve_s_max",
    "commit_s_p50",
    "commit_s_max",
    "replicas_per_cycle",
    "placed",
    "unschedulable",
    "pending",
)


class _TimedFencedStore(FencedStore):
    """The leader's fenced store, timing each cycle commit."""

    def __init__(self, store: SqlStore, term: int | None) -> None:
        super().__init__(store, term)
        self.commit_s: list[float] = []

    def commit_cycle(self, cycle: CycleCommit) -> CycleOutcome:
        t0 = time.perf_counter()
        outcome = super().commit_cycle(cycle)
        self.commit_s.append(time.perf_counter() - t0)
        return outcome


class _Cycles:
    """A ``LoopObserver`` that keeps every cycle's report."""

    def __init__(self) -> None:
        self.reports: list[CycleReport] = []
        self._lock = threading.Lock()

    def on_submitted(self, workloads: Sequence[Workload]) -> None:
        pass

    def on_cycle(self, report: CycleReport) -> None:
        with self._lock:
            self.reports.append(report)

    def on_state_change(self, workload: Workload, old: WorkloadState) -> None:
        pass


def _pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def run_one(
    url: str, replicas: int, seed: int, submit_batch: int, budget_s: float, timeout_s: float
) -> dict[str, Any]:
    """Submit the mix to the store at ``url``, then lead and place it; the row."""
    scenario = load_scenario("beijing-hebei")
    specs = [w.spec for w in generate_mix(replicas, seed)]
    store = open_store(url)
    assert isinstance(store, SqlStore)
    submit_s = []
    now = datetime.now(UTC)
    for i in range(0, len(specs), submit_batch):
        t0 = time.perf_counter()
        store.submit("", "", specs[i : i + submit_batch], now)
        submit_s.append(time.perf_counter() - t0)
    lease = store.leader_lease("bench")
    term = lease.try_acquire()
    if term is None:
        raise click.ClickException(f"another server leads on {store.url}: use an empty database")
    fenced = _TimedFencedStore(store, term if store.shared else None)
    cycles = _Cycles()
    config = LoopConfig(solve_budget_s=budget_s)
    loop = SchedulingLoop(fenced, scenario, observers=[cycles], config=config)
    try:
        t0 = time.perf_counter()
        loop.start()
        load_s = time.perf_counter() - t0
        idle = loop.wait_ready(timeout_s) and loop.wait_idle(timeout_s)
        place_s = time.perf_counter() - t0
        if not idle:
            raise click.ClickException(f"the backlog was not placed within {timeout_s:.0f} s")
    finally:
        loop.stop()
        lease.release()
    counts = store.counts().by_state
    store.close()
    reports = cycles.reports
    return {
        "store": store_kind(url),
        "nodes": sum(p.count for p in scenario.pools),
        "workloads": len(specs),
        "replicas": replicas,
        "submit_ms_p50": 1000 * statistics.median(submit_s),
        "submit_ms_p99": 1000 * (_pct(submit_s, 99) or 0.0),
        "load_s": load_s,
        "place_s": place_s,
        "cycles": len(reports),
        "cycle_s_p50": _pct([r.cycle_seconds for r in reports], 50),
        "cycle_s_max": max((r.cycle_seconds for r in reports), default=None),
        "solve_s_p50": _pct([r.solve_seconds for r in reports], 50),
        "solve_s_max": max((r.solve_seconds for r in reports), default=None),
        "commit_s_p50": _pct(fenced.commit_s, 50),
        "commit_s_max": max(fenced.commit_s, default=None),
        "replicas_per_cycle": statistics.mean(r.batch_replicas for r in reports) if reports else 0,
        "placed": counts.get(WorkloadState.PLACED, 0),
        "unschedulable": counts.get(WorkloadState.UNSCHEDULABLE, 0),
        "pending": counts.get(WorkloadState.PENDING, 0),
    }


@click.command("loop")
@stores_option
@click.option(
    "--replicas",
    type=click.IntRange(1, 200_000),
    default=50_000,
    show_default=True,
    help="pending replicas to place (the generated mix)",
)
@click.option(
    "--submit-batch",
    type=click.IntRange(1, 10_000),
    default=100,
    show_default=True,
    help="workloads per submission",
)
@click.option(
    "--solve-budget-ms",
    type=click.FloatRange(1, 600_000),
    default=50.0,
    show_default=True,
    help="the loop's per-cycle solve deadline (as valley serve)",
)
@click.option(
    "--timeout",
    type=click.FloatRange(1, 3600),
    default=600.0,
    show_default=True,
    help="seconds the backlog may take",
)
@seed_option
@output_option
def command(
    stores: tuple[str, ...],
    replicas: int,
    submit_batch: int,
    solve_budget_ms: float,
    timeout: float,
    seed: int,
    output: str,
) -> None:
    """One leader places a backlog of pending replicas on the scenario's 6,144 nodes."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="valley-bench-loop-") as tmp:
        for store in stores:
            url = f"sqlite:///{tmp}/valley.db" if store == "sqlite" else store
            rows.append(run_one(url, replicas, seed, submit_batch, solve_budget_ms / 1000, timeout))
    params = {
        "replicas": replicas,
        "submit_batch": submit_batch,
        "solve_budget_ms": solve_budget_ms,
        "seed": seed,
        "scenario": "beijing-hebei",
    }
    emit("loop", params, rows, output, COLUMNS)
