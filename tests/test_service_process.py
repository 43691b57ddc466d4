"""A real ``valley serve`` subprocess: kill -9 right after SubmitWorkloads returns loses
nothing, duplicates nothing and moves no placement; SIGTERM drains and exits 0."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from scheduler._proto.valley.v1 import placement_pb2 as pb
from tests.conftest import TINY
from tests.test_service_support import (
    PLACED,
    Client,
    consistent_view,
    cpu_spec,
    placement_violations,
    wait_settled,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]


class Server:
    def __init__(self, proc: subprocess.Popen[str], port: int, log: list[str]) -> None:
        self.proc = proc
        self.port = port
        self.log = log


@contextmanager
def valley_serve(tmp_path: Path, store: str, *extra: str) -> Iterator[Server]:
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scheduler.cli",
            "serve",
            "--grpc-address",
            "127.0.0.1:0",
            "--metrics-address",
            "127.0.0.1:0",
            "--store",
            store,
            "--scenario",
            str(scenario),
            "--batch-window-ms",
            "10",
            "--grace",
            "5",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        # this checkout's code, whichever one the environment has installed
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)},
    )
    lines: queue.Queue[str] = queue.Queue()
    log: list[str] = []

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line)
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    port = 0
    while not port:
        try:
            line = lines.get(timeout=60)
        except queue.Empty:
            proc.kill()
            raise AssertionError("valley serve did not start:\n" + "".join(log)) from None
        if not line:
            raise AssertionError("valley serve exited:\n" + "".join(log))
        if m := re.search(r"serving gRPC on [\d.]+:(\d+)", line):
            port = int(m.group(1))
    try:
        yield Server(proc, port, log)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def by_id(workloads: list[pb.Workload]) -> dict[str, pb.Workload]:
    return {w.id: w for w in workloads}


def test_kill_9_right_after_submit_loses_nothing_duplicates_nothing_moves_nothing(
    tmp_path: Path,
) -> None:
    store = f"sqlite:///{tmp_path}/valley.db"
    share = pb.WorkloadSpec(
        tenant="t", resources=pb.Resources(cpu_millis=500, memory_mib=1024, gpu_millis=300)
    )
    with valley_serve(tmp_path, store) as first:
        assert solver_processes(first.proc.pid), "the solver process is missing"
        client = Client.connect(first.port)
        # 5 CPU nodes of 4 cores: seven 4-core workloads leave two waiting; the GPU shares
        # pack onto physical GPUs whose indices must come back exactly
        client.submit([cpu_spec(4, name=f"big{i}") for i in range(7)] + [share] * 3)
        before = by_id(wait_settled(client))
        last = client.submit([cpu_spec(0.5, name=f"last{i}") for i in range(5)], request_id="last")
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=30)
        client.close()
    with valley_serve(tmp_path, store) as second:
        client = Client.connect(second.port)
        after = by_id(client.all_workloads())
        assert set(after) == set(before) | {w.id for w in last}, "accepted workloads lost"
        assert len(after) == 15
        for wid, w in before.items():
            if w.state == PLACED:
                assert after[wid].state == PLACED
                assert list(after[wid].placements) == list(w.placements), f"{wid} moved"
        again = client.submit([cpu_spec(0.5, name=f"last{i}") for i in range(5)], request_id="last")
        assert [w.id for w in again] == [w.id for w in last]
        wait_settled(client)
        settled, sites = consistent_view(client)
        assert len(settled) == 15
        assert placement_violations(settled, sites) == []
        client.close()


def children(pid: int) -> set[int]:
    """The child processes of ``pid`` (Linux)."""
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        out |= {int(c) for c in (task / "children").read_text().split()}
    return out


def solver_processes(pid: int) -> set[int]:
    """The solver processes of process ``pid`` (Linux): the children its forkserver forked, or
    its own spawned ones; not multiprocessing's resource tracker."""
    out: set[int] = set()
    for kid in children(pid):
        with contextlib.suppress(OSError):  # ended meanwhile
            cmdline = Path(f"/proc/{kid}/cmdline").read_bytes()
            if b"forkserver" in cmdline:
                out |= children(kid)
            elif b"resource_tracker" not in cmdline:
                out.add(kid)
    return out


def cpu_seconds(pid: int) -> float:
    """The CPU time process ``pid`` has used (user and system, Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_sigterm_drains_and_exits_zero(tmp_path: Path) -> None:
    # in one process (the one-core setting), without FGD: the flags reach the loop
    store = f"sqlite:///{tmp_path}/valley.db"
    with valley_serve(tmp_path, store, "--no-solver-process", "--no-fgd") as server:
        client = Client.connect(server.port)
        health = health_pb2_grpc.HealthStub(client.channel)
        status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status
        assert status == health_pb2.HealthCheckResponse.SERVING
        assert children(server.proc.pid) == set()  # no solver process
        stream = client.placement.WatchWorkloads(pb.WatchWorkloadsRequest())
        stream.initial_metadata()
        ended = threading.Event()

        def drain_stream() -> None:
            try:
                for _ in stream:
                    pass
            except grpc.RpcError:
                pass
            ended.set()

        threading.Thread(target=drain_stream, daemon=True).start()
        client.submit([cpu_spec(1)])
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=60) == 0, "".join(server.log)
        assert ended.wait(30), "the watch stream did not end"
        assert any("stopped" in line for line in server.log)
        client.close()


def test_sigterm_during_a_long_solve_exits_within_the_grace(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/valley.db"
    grace = 2.0
    # one batch of a million replicas: its solve takes tens of seconds whatever the budget
    batch = ("--max-batch-replicas", "10000000", "--grace", str(grace))
    with valley_serve(tmp_path, store, "--scenario", "beijing-hebei", *batch) as server:
        client = Client.connect(server.port)
        client.submit([cpu_spec(0.001, name=f"f{i}", replicas=10_000) for i in range(100)])
        # the loop is solving it: its solver process has spent half a second on it
        end = time.monotonic() + 30
        while max(cpu_seconds(kid) for kid in solver_processes(server.proc.pid)) < 0.5:
            assert time.monotonic() < end, "the solver process is not solving"
            time.sleep(0.05)
        t0 = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        code = server.proc.wait(timeout=120)
        took = time.monotonic() - t0
        client.close()
    assert code == 0, "".join(server.log)
    assert took < grace + 2.0, f"exited {took:.1f} s after SIGTERM (grace {grace} s)"
