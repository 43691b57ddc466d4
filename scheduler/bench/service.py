"""``valley bench service``: the whole service under load, against a no-op ceiling.

Two servers run as subprocesses (so each has its own interpreter and its memory can be read):
``valley serve`` on SQLite in a temporary directory, and ``scheduler.bench.noop_server``, which
implements the same proto and returns at once. One load generator drives both the same way:
``--channels`` gRPC channels send batches of ``--batch`` workloads at ``--rate`` workloads per
second (open loop: batch k is due at k x batch / rate) for ``--duration`` seconds, while a
watch stream of PLACED events only timestamps every placement (``--watch batches``, the default:
WatchWorkloadBatches, several events per message; ``events``: WatchWorkloads, one per message).
``--store`` (repeatable) names Valley's store: ``sqlite`` (a file in the temporary directory,
the default) or a ``postgresql://`` URL of an empty database; each gives a row.
Rows (``policy`` = valley | noop, ``store`` = sqlite | postgresql | - for noop):

- accepted_per_second: workloads accepted / time from the first send to the last answer
- placed_per_second: workloads placed / time from the first send to the last PLACED event
- submit_to_placed_p50_ms, _p99_ms: from sending a workload's request to its PLACED event
- rpc_p50_ms, rpc_p99_ms: SubmitWorkloads round trips
- errors: failed SubmitWorkloads calls
- rss_mib: peak resident memory of the server process and its children (Valley's solver
  process), summed

Targets (measured, not asserted): >= 5,000 workloads/s accepted and placed with batches of 100
(>= 60% of the no-op ceiling), submit-to-placed p99 <= 250 ms at 1,000 workloads/s.
"""

from __future__ import annotations

import contextlib
import os
import queue
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import grpc
import numpy as np

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler._proto.valley.v1 import placement_pb2_grpc as pb_grpc
from scheduler.bench.report import (
    emit,
    output_option,
    plot_option,
    progress,
    save_plot,
    store_kind,
    stores_option,
)

COLUMNS = (
    "policy",
    "store",
    "accepted_per_second",
    "placed_per_second",
    "submit_to_placed_p50_ms",
    "submit_to_placed_p99_ms",
    "rpc_p50_ms",
    "rpc_p99_ms",
    "errors",
    "rss_mib",
)
MAX_WORKLOADS = 500_000  # every run is bounded


# ----------------------------------------------------------------------------- servers


@dataclass
class Target:
    name: str
    address: str
    proc: subprocess.Popen[str]
    log: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        """The loopback port it serves gRPC on."""
        return int(self.address.rpartition(":")[2])

    def peak_rss_mib(self) -> float | None:
        """Peak resident memory of the server and its child processes (Valley's solver
        process), summed: an upper bound of what they held at once."""
        peaks = [_peak_rss_kib(pid) for pid in (self.proc.pid, *_children(self.proc.pid))]
        known = [p for p in peaks if p is not None]
        return sum(known) / 1024.0 if known else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (Linux /proc; empty elsewhere)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids = [int(k) for k in f.read().split()]
        except OSError:
            continue
        for k in kids:
            out += [k, *_children(k)]
    return out


def _peak_rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _code_path() -> dict[str, str]:
    """Run from a source checkout, the servers run that checkout's code (not whichever one the
    environment installed): its root first on PYTHONPATH."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").exists():
        return {}
    rest = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": os.pathsep.join([str(root), rest]) if rest else str(root)}


def _start(name: str, args: list[str], cwd: str) -> Target:
    proc = subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **_code_path()},
    )
    lines: queue.Queue[str] = queue.Queue()
    target = Target(name, "", proc)

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            target.log.append(line)
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + 120
    while not target.address:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            target.stop()
            raise click.ClickException(f"{name} did not start:\n{''.join(target.log)}") from None
        if not line:
            raise click.ClickException(f"{name} exited:\n{''.join(target.log)}")
        if m := re.search(r"serving gRPC on ([\d.]+:\d+)", line):
            target.address = m.group(1)
    return target


@contextlib.contextmanager
def valley_server(
    directory: str,
    scenario: str,
    policy: str,
    solve_budget_ms: float = 50.0,
    store: str = "sqlite",
    extra: Sequence[str] = (),
) -> Iterator[Target]:
    """``valley serve`` on ``store``: ``sqlite`` (a file in ``directory``) or a store URL."""
    target = _start(
        "valley",
        [
            "-m",
            "scheduler.cli",
            "serve",
            "--grpc-address",
            "127.0.0.1:0",
            "--metrics-address",
            "",
            "--store",
            f"sqlite:///{directory}/valley.db" if store == "sqlite" else store,
            "--scenario",
            scenario,
            "--policy",
            policy,
            "--solve-budget-ms",
            str(solve_budget_ms),
            "--log-level",
            "warning",
            *extra,
        ],
        directory,
    )
    try:
        yield target
    finally:
        target.stop()


@contextlib.contextmanager
def noop_server(directory: str) -> Iterator[Target]:
    target = _start(
        "noop", ["-m", "scheduler.bench.noop_server", "--address", "127.0.0.1:0"], directory
    )
    try:
        yield target
    finally:
        target.stop()


# ----------------------------------------------------------------------------- load


def workload_mix(rng: random.Random, n: int) -> list[pb.WorkloadSpec]:
    """Small CPU services and batch jobs of Zhongguancun tenants that fit beijing-hebei many
    times over, so that placement, not capacity, is what is measured."""
    out = []
    for i in range(n):
        spec = pb.WorkloadSpec(
            tenant=f"tenant-{i % 20}",
            name=f"bench-{i}",
            resources=pb.Resources(
                cpu_millis=rng.choice([250, 500, 1000, 2000]),
                memory_mib=rng.choice([256, 512, 1024, 4096]),
            ),
            replicas=rng.choice([1, 1, 1, 2]),
            priority=rng.choice([0, 0, 1]),
        )
        r = rng.random()
        if r < 0.3:
            spec.kind = pb.WORKLOAD_KIND_SERVICE
            spec.origin = "zhongguancun"
            spec.max_latency_ms = 5.0
        elif r < 0.4:
            spec.kind = pb.WORKLOAD_KIND_SERVICE
            spec.origin = "zhongguancun"
            spec.max_latency_ms = 2.0
        else:
            spec.kind = pb.WORKLOAD_KIND_BATCH
        out.append(spec)
    return out


@dataclass
class RunResult:
    accepted: int
    errors: int
    send_span_s: float
    place_span_s: float
    placed: int
    submit_to_placed_s: list[float]
    rpc_s: list[float]


def _pct(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values), q)) * 1000.0 if values else None


def drive(
    address: str,
    batches: Sequence[Sequence[pb.WorkloadSpec]],
    rate: float,
    channels: int,
    drain_s: float,
    watch: str = "batches",
) -> RunResult:
    """Send ``batches`` open-loop at ``rate`` workloads/s over ``channels`` channels while a
    watcher records when each workload is PLACED (``watch``: through WatchWorkloadBatches, or
    one message per event through WatchWorkloads)."""
    placed_at: dict[str, float] = {}
    watch_channel = grpc.insecure_channel(address)
    watch_stub = pb_grpc.PlacementServiceStub(watch_channel)
    placements = pb.WatchWorkloadsRequest(states=[pb.WORKLOAD_STATE_PLACED])
    stream: Any = (
        watch_stub.WatchWorkloadBatches(placements)
        if watch == "batches"
        else watch_stub.WatchWorkloads(placements)
    )
    stream.initial_metadata()  # the stream is open: every PLACED from now on is seen

    def follow() -> None:
        try:
            if watch == "batches":
                for message in stream:
                    now = time.monotonic()
                    for e in message.events:
                        placed_at[e.workload.id] = now
            else:
                for e in stream:
                    placed_at[e.workload.id] = time.monotonic()
        except grpc.RpcError:
            pass

    watcher = threading.Thread(target=follow, daemon=True)
    watcher.start()
    sent_at: dict[str, float] = {}
    rpc_s: list[float] = []
    errors = [0]
    last_answer = [0.0]
    lock = threading.Lock()
    size = len(batches[0]) if batches else 1
    t0 = time.monotonic() + 0.2

    def sender(index: int) -> None:
        ch = grpc.insecure_channel(address)
        stub = pb_grpc.PlacementServiceStub(ch)
        try:
            for k in range(index, len(batches), channels):
                due = t0 + k * size / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                start = time.monotonic()
                try:
                    resp = stub.SubmitWorkloads(
                        pb.SubmitWorkloadsRequest(workloads=batches[k]), timeout=30
                    )
                except grpc.RpcError:
                    with lock:
                        errors[0] += 1
                    continue
                end = time.monotonic()
                with lock:
                    rpc_s.append(end - start)
                    last_answer[0] = max(last_answer[0], end)
                    for w in resp.workloads:
                        sent_at[w.id] = start
        finally:
            ch.close()

    threads = [threading.Thread(target=sender, args=(i,), daemon=True) for i in range(channels)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # let the placements of the last batches arrive (bounded)
    end = time.monotonic() + drain_s
    while time.monotonic() < end and len(placed_at.keys() & sent_at.keys()) < len(sent_at):
        time.sleep(0.05)
    stream.cancel()
    watch_channel.close()
    watcher.join(5)
    placed = [i for i in sent_at if i in placed_at]
    latencies = [placed_at[i] - sent_at[i] for i in placed]
    last_placed = max((placed_at[i] for i in placed), default=t0)
    return RunResult(
        accepted=len(sent_at),
        errors=errors[0],
        send_span_s=max(1e-9, last_answer[0] - t0),
        place_span_s=max(1e-9, last_placed - t0),
        placed=len(placed),
        submit_to_placed_s=latencies,
        rpc_s=rpc_s,
    )


def row(policy: str, store: str | None, r: RunResult, rss: float | None) -> dict[str, Any]:
    return {
        "policy": policy,
        "store": store,
        "accepted_per_second": r.accepted / r.send_span_s,
        "placed_per_second": r.placed / r.place_span_s,
        "submit_to_placed_p50_ms": _pct(r.submit_to_placed_s, 50),
        "submit_to_placed_p99_ms": _pct(r.submit_to_placed_s, 99),
        "rpc_p50_ms": _pct(r.rpc_s, 50),
        "rpc_p99_ms": _pct(r.rpc_s, 99),
        "errors": r.errors,
        "rss_mib": rss,
    }


def _plot(rows: Sequence[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"{r['policy']} ({r['store']})" if r["store"] else r["policy"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    x = np.arange(len(rows))
    a.bar(x - 0.2, [r["accepted_per_second"] for r in rows], 0.4, label="accepted/s")
    a.bar(x + 0.2, [r["placed_per_second"] for r in rows], 0.4, label="placed/s")
    a.set_xticks(x, names)
    a.set_ylabel("workloads per second")
    a.legend()
    b.bar(x - 0.2, [r["submit_to_placed_p50_ms"] or 0 for r in rows], 0.4, label="p50")
    b.bar(x + 0.2, [r["submit_to_placed_p99_ms"] or 0 for r in rows], 0.4, label="p99")
    b.set_xticks(x, names)
    b.set_ylabel("submit to placed (ms)")
    b.legend()
    fig.suptitle("valley bench service")
    save_plot(fig, path)


@click.command("service")
@click.option(
    "--rate",
    type=click.FloatRange(1, 100_000),
    default=1000.0,
    show_default=True,
    help="workloads per second offered",
)
@click.option(
    "--batch",
    type=click.IntRange(1, 1000),
    default=100,
    show_default=True,
    help="workloads per SubmitWorkloads request",
)
@click.option(
    "--duration",
    type=click.FloatRange(0.5, 300),
    default=10.0,
    show_default=True,
    help="seconds of load",
)
@click.option(
    "--channels",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="gRPC channels (one sender thread each)",
)
@click.option(
    "--drain",
    type=click.FloatRange(0, 120),
    default=15.0,
    show_default=True,
    help="seconds to wait for the last placements",
)
@click.option(
    "--scenario", default="beijing-hebei", show_default=True, help="scenario of the Valley server"
)
@click.option(
    "--policy", default="valley", show_default=True, help="placement policy of the Valley server"
)
@click.option(
    "--solve-budget-ms",
    type=click.FloatRange(1, 600_000),
    default=50.0,
    show_default=True,
    help="the Valley server's per-cycle solve deadline",
)
@click.option(
    "--only", type=click.Choice(["both", "valley", "noop"]), default="both", show_default=True
)
@stores_option
@click.option(
    "--seed", type=int, default=0, show_default=True, help="random seed of the workload mix"
)
@click.option(
    "--watch",
    type=click.Choice(["batches", "events"]),
    default="batches",
    show_default=True,
    help="follow placements with WatchWorkloadBatches or WatchWorkloads (one message per event)",
)
@click.option(
    "--two-tenants",
    is_flag=True,
    help="instead: a quiet tenant's submit-to-placed p99 (--quiet-rate one-replica workloads "
    "a second) alone, under another tenant's flood with a --flood-quota, and without one",
)
@click.option(
    "--quiet-rate",
    type=click.FloatRange(1, 1000),
    default=20.0,
    show_default=True,
    help="--two-tenants: the quiet tenant's workloads per second",
)
@click.option(
    "--flood-quota",
    type=click.FloatRange(1, 100_000),
    default=100.0,
    show_default=True,
    help="--two-tenants: the flooder's submissions_per_second quota",
)
@click.option(
    "--rounds",
    type=click.IntRange(1, 20),
    default=1,
    show_default=True,
    help="--two-tenants: run the phases this many times in turn, pooling each phase's latencies",
)
@click.option(
    "--flood-cpus",
    type=click.IntRange(0, 1024),
    default=1,
    show_default=True,
    help="--two-tenants: CPUs of the flooder's own (as another firm's machine), the server and "
    "the quiet tenant on the rest, in every phase; 0: all share every CPU",
)
@output_option
@plot_option
def command(
    rate: float,
    batch: int,
    duration: float,
    channels: int,
    drain: float,
    scenario: str,
    policy: str,
    solve_budget_ms: float,
    only: str,
    stores: tuple[str, ...],
    seed: int,
    watch: str,
    two_tenants: bool,
    quiet_rate: float,
    flood_quota: float,
    flood_cpus: int,
    rounds: int,
    output: str,
    plot_path: str | None,
) -> None:
    """The service under load (on SQLite or PostgreSQL) against a no-op server of the same
    proto; ``--two-tenants``: does one tenant's flood delay another?"""
    if two_tenants:
        from scheduler.bench.tenants import Settings

        settings = Settings(
            scenario=scenario,
            policy=policy,
            solve_budget_ms=solve_budget_ms,
            batch=batch,
            channels=channels,
            duration=duration,
            drain_s=drain,
            quiet_rate=quiet_rate,
            flood_quota=flood_quota,
            flood_cpus=flood_cpus,
            rounds=rounds,
        )
        _two_tenants(settings, output)
        return
    total = int(rate * duration)
    if total > MAX_WORKLOADS:
        raise click.BadParameter(f"rate x duration = {total} > {MAX_WORKLOADS} workloads")
    n_batches = max(1, total // batch)
    specs = workload_mix(random.Random(seed), n_batches * batch)
    batches = [specs[i * batch : (i + 1) * batch] for i in range(n_batches)]
    rows = []
    # (row name, store): one Valley row per store, then the ceiling
    targets: list[tuple[str, str | None]] = []
    if only in ("both", "valley"):
        targets += [("valley", store) for store in stores]
    if only in ("both", "noop"):
        targets.append(("noop", None))
    with tempfile.TemporaryDirectory(prefix="valley-bench-") as tmp:
        for name, on in progress(targets, total=len(targets), desc="service"):
            cm = (
                valley_server(tmp, scenario, policy, solve_budget_ms, on or "sqlite")
                if name == "valley"
                else noop_server(tmp)
            )
            with cm as target:
                result = drive(target.address, batches, rate, channels, drain, watch)
                kind = None if on is None else store_kind(on)
                rows.append(row(name, kind, result, target.peak_rss_mib()))
    params = {
        "rate": rate,
        "batch": batch,
        "duration": duration,
        "channels": channels,
        "workloads": n_batches * batch,
        "scenario": scenario,
        "policy": policy,
        "solve_budget_ms": solve_budget_ms,
        "seed": seed,
        "watch": watch,
        "stores": [store_kind(store) for store in stores],  # never a URL: it may hold a password
    }
    emit("service", params, rows, output, COLUMNS)
    if plot_path:
        _plot(rows, plot_path)


def _two_tenants(settings: Any, output: str) -> None:
    """``--two-tenants``: each phase of ``tenants.PHASES`` on a fresh server."""
    from scheduler.bench import tenants

    phases, params = tenants.run(settings, valley_server)
    emit("service-two-tenants", params, tenants.rows(phases), output, tenants.COLUMNS)
