"""``valley bench service --two-tenants``: does one tenant's flood delay another tenant?

A quiet tenant submits one-replica workloads, one per request, at ``quiet_rate`` a second and
follows its own PLACED events; its submit-to-placed p99 is measured three times, each on a
fresh ``valley serve --auth`` (SQLite): alone, while a flooding tenant sends batches as fast as
``flood_channels`` channels can with a ``submissions_per_second`` quota, and the same flood
without a quota. Every phase is bounded by ``duration`` seconds and ``MAX_FLOOD_REQUESTS``
flood requests.

The flooder is another firm's machine: it runs in a process of its own (its threads never hold
the quiet client's interpreter lock), and with ``flood_cpus`` on CPUs of its own, the server and
the quiet client on the others - in every phase, so the server has the same CPUs alone and
flooded and only the flood's traffic differs.
Target: the flood with a rate quota raises the quiet p99 by at most 20%.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler._proto.valley.v1 import placement_pb2_grpc as pb_grpc
from scheduler.bench.report import progress

COLUMNS = (
    "phase",
    "quiet_sent",
    "quiet_placed",
    "quiet_p50_ms",
    "quiet_p99_ms",
    "quiet_p99_vs_alone",
    "flood_accepted",
    "flood_refused",
)
MAX_FLOOD_REQUESTS = 200_000  # requests one phase's flood may send, accepted or not
PHASES = ("alone", "flood-rate-quota", "flood-no-quota")


@dataclass(frozen=True)
class Tokens:
    quiet: str
    flood: str


def auth_file(tokens: Tokens, flood_quota: float | None) -> str:
    """The auth file of a phase: a token per tenant; the flooder's rate quota when given."""

    def entry(name: str, token: str) -> str:
        digest = hashlib.sha256(token.encode()).hexdigest()
        return f'[[tokens]]\nname = "{name}"\nsha256 = "{digest}"\ntenant = "{name}"\n'

    text = entry("quiet", tokens.quiet) + entry("flood", tokens.flood)
    if flood_quota is not None:
        text += f"\n[quotas.flood]\nsubmissions_per_second = {flood_quota}\n"
    return text


def new_tokens() -> Tokens:
    return Tokens(os.urandom(16).hex(), os.urandom(16).hex())


def _spec(name: str, cpu_millis: int) -> pb.WorkloadSpec:
    # short batch jobs: a flood that gets in completes and frees its room again
    return pb.WorkloadSpec(
        name=name,
        resources=pb.Resources(cpu_millis=cpu_millis, memory_mib=256),
        kind=pb.WORKLOAD_KIND_BATCH,
        duration_s=2,
    )


@dataclass
class Phase:
    quiet_latencies_s: list[float]
    quiet_sent: int
    flood_accepted: int
    flood_refused: int

    def plus(self, other: Phase) -> Phase:
        """This phase and another round of it, pooled."""
        return Phase(
            self.quiet_latencies_s + other.quiet_latencies_s,
            self.quiet_sent + other.quiet_sent,
            self.flood_accepted + other.flood_accepted,
            self.flood_refused + other.flood_refused,
        )


def _quiet(
    address: str, token: str, rate: float, duration: float, drain_s: float
) -> tuple[int, list[float]]:
    """One-replica workloads at ``rate`` a second for ``duration``; their submit-to-placed
    latencies, seen on the tenant's own watch stream."""
    md = (("authorization", f"Bearer {token}"),)
    placed_at: dict[str, float] = {}
    with grpc.insecure_channel(address) as ch:
        stub = pb_grpc.PlacementServiceStub(ch)
        stream: Any = stub.WatchWorkloadBatches(
            pb.WatchWorkloadsRequest(states=[pb.WORKLOAD_STATE_PLACED]), metadata=md
        )
        stream.initial_metadata()

        def follow() -> None:
            try:
                for message in stream:
                    now = time.monotonic()
                    for e in message.events:
                        placed_at[e.workload.id] = now
            except grpc.RpcError:
                pass

        watcher = threading.Thread(target=follow, daemon=True)
        watcher.start()
        sent_at: dict[str, float] = {}
        t0 = time.monotonic()
        for k in range(int(rate * duration)):
            delay = t0 + k / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            start = time.monotonic()
            try:
                resp = stub.SubmitWorkloads(
                    pb.SubmitWorkloadsRequest(workloads=[_spec(f"quiet-{k}", 100)]),
                    metadata=md,
                    timeout=30,
                )
            except grpc.RpcError:
                continue
            sent_at[resp.workloads[0].id] = start
        end = time.monotonic() + drain_s
        while time.monotonic() < end and not sent_at.keys() <= placed_at.keys():
            time.sleep(0.05)
        stream.cancel()
        watcher.join(5)
    return len(sent_at), [placed_at[i] - sent_at[i] for i in sent_at if i in placed_at]


def _flood(address: str, token: str, batch: int, channels: int, stop: Any) -> tuple[int, int]:
    """Batches as fast as ``channels`` channels go until ``stop`` (an event): (accepted,
    refused)."""
    md = (("authorization", f"Bearer {token}"),)
    counts = [0, 0]
    lock = threading.Lock()
    budget = [MAX_FLOOD_REQUESTS]
    specs = [_spec(f"flood-{i}", 250) for i in range(batch)]

    def send() -> None:
        with grpc.insecure_channel(address) as ch:
            stub = pb_grpc.PlacementServiceStub(ch)
            while not stop.is_set():
                with lock:
                    if budget[0] <= 0:
                        return
                    budget[0] -= 1
                try:
                    stub.SubmitWorkloads(
                        pb.SubmitWorkloadsRequest(workloads=specs), metadata=md, timeout=30
                    )
                    ok = True
                except grpc.RpcError as e:
                    if e.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                        stop.wait(0.05)  # a server in trouble: do not spin on it
                    ok = False
                with lock:
                    counts[0 if ok else 1] += batch

    threads = [threading.Thread(target=send, daemon=True) for _ in range(channels)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts[0], counts[1]


def _flooder_main(
    address: str,
    token: str,
    batch: int,
    channels: int,
    cpus: frozenset[int] | None,
    stop: Any,
    results: Any,
) -> None:
    """The flooding tenant's process: on ``cpus`` when given; its counts go to ``results``."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    results.put(_flood(address, token, batch, channels, stop))


def split_cpus(flood_cpus: int) -> tuple[frozenset[int], frozenset[int]] | None:
    """(server's, flooder's) CPUs: the last ``flood_cpus`` of the CPUs this process may use go
    to the flooder; None when ``flood_cpus`` is 0 or leaves the server none."""
    mine = sorted(os.sched_getaffinity(0))
    if flood_cpus <= 0 or flood_cpus >= len(mine):
        return None
    return frozenset(mine[:-flood_cpus]), frozenset(mine[-flood_cpus:])


@dataclass(frozen=True)
class Settings:
    """One ``--two-tenants`` run: the server's, the quiet tenant's and the flooder's."""

    scenario: str
    policy: str
    solve_budget_ms: float
    batch: int
    channels: int
    duration: float
    drain_s: float
    quiet_rate: float
    flood_quota: float
    flood_cpus: int
    rounds: int = 1

    def params(self, split: tuple[frozenset[int], frozenset[int]] | None) -> dict[str, Any]:
        return {
            "quiet_rate": self.quiet_rate,
            "flood_quota": self.flood_quota,
            "flood_batch": self.batch,
            "flood_channels": self.channels,
            "flood_cpus": sorted(split[1]) if split else None,
            "server_cpus": sorted(split[0]) if split else None,
            "duration": self.duration,
            "scenario": self.scenario,
            "policy": self.policy,
            "solve_budget_ms": self.solve_budget_ms,
            "rounds": self.rounds,
        }


def run(settings: Settings, server: Callable[..., Any]) -> tuple[dict[str, Phase], dict[str, Any]]:
    """Every phase of ``PHASES`` on a fresh server (``server(directory, scenario, policy,
    solve_budget_ms, extra=...)``, a context manager giving its address); the phases and the
    run's parameters. With ``flood_cpus``, the servers (started from this process, so they
    inherit) and the quiet client run on CPUs the flooder does not use. ``rounds`` > 1 runs the
    phases that many times in turn and pools each phase's latencies: the machine's own noise
    then falls on every phase alike."""
    tokens = new_tokens()
    phases: dict[str, Phase] = {}
    split = split_cpus(settings.flood_cpus)
    everywhere = os.sched_getaffinity(0)
    if split:
        os.sched_setaffinity(0, split[0])
    try:
        order = [name for _ in range(settings.rounds) for name in PHASES]
        for name in progress(order, total=len(order), desc="two tenants"):
            quota = settings.flood_quota if name == "flood-rate-quota" else None
            with tempfile.TemporaryDirectory(prefix="valley-bench-") as tmp:
                path = os.path.join(tmp, "auth.toml")
                with open(path, "w") as f:
                    f.write(auth_file(tokens, quota))
                with server(
                    tmp,
                    settings.scenario,
                    settings.policy,
                    settings.solve_budget_ms,
                    extra=("--auth", path),
                ) as target:
                    phase = run_phase(
                        target.address,
                        tokens,
                        name != "alone",
                        settings,
                        split[1] if split else None,
                    )
            phases[name] = phases[name].plus(phase) if name in phases else phase
    finally:
        os.sched_setaffinity(0, everywhere)
    return phases, settings.params(split)


def run_phase(
    address: str,
    tokens: Tokens,
    flood: bool,
    settings: Settings,
    flood_cpus: frozenset[int] | None = None,
) -> Phase:
    """One phase on a running server: the quiet tenant, with the flooder's process when
    ``flood``."""
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    results = ctx.Queue()
    args = (address, tokens.flood, settings.batch, settings.channels, flood_cpus, stop, results)
    flooder = ctx.Process(target=_flooder_main, args=args, daemon=True)
    if flood:
        flooder.start()
        time.sleep(1.0)  # the flood is on before the quiet tenant starts
    accepted = refused = 0
    try:
        sent, latencies = _quiet(
            address, tokens.quiet, settings.quiet_rate, settings.duration, settings.drain_s
        )
    finally:
        stop.set()
        if flood:
            with contextlib.suppress(queue.Empty):
                accepted, refused = results.get(timeout=60)
            flooder.join(10)
            if flooder.is_alive():
                flooder.kill()
    return Phase(latencies, sent, accepted, refused)


def _pct(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values), q)) * 1000.0 if values else None


def rows(phases: dict[str, Phase]) -> list[dict[str, Any]]:
    """A row per phase; ``quiet_p99_vs_alone`` is the phase's quiet p99 over the alone one."""
    alone = _pct(phases["alone"].quiet_latencies_s, 99) if "alone" in phases else None
    out = []
    for name, p in phases.items():
        p99 = _pct(p.quiet_latencies_s, 99)
        out.append(
            {
                "phase": name,
                "quiet_sent": p.quiet_sent,
                "quiet_placed": len(p.quiet_latencies_s),
                "quiet_p50_ms": _pct(p.quiet_latencies_s, 50),
                "quiet_p99_ms": p99,
                "quiet_p99_vs_alone": p99 / alone if p99 is not None and alone else None,
                "flood_accepted": p.flood_accepted,
                "flood_refused": p.flood_refused,
            }
        )
    return out
