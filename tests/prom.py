"""Prometheus for tests: a real Prometheus server (the Debian binary) started on a free loopback
port with a generated configuration, and helpers about metric names.

Use it from a test module with ``pytest_plugins = ["tests.prom"]`` (and import its classes only
under ``TYPE_CHECKING``, so that pytest imports the module as a plugin first). Fixtures:
``prometheus_server``, a factory of servers that scrape the given targets every second (module
scope; tests skip with a clear message only when the binary is missing), and ``valley_server``,
``valley serve`` in a subprocess on free loopback ports.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))

# ----------------------------------------------------------------------------- metric names

_METRIC = re.compile(
    r"(?<![\w:\"])((?:valley[_:]|grpc_server_|process_|python_)[A-Za-z0-9_:]*|up)\b"
)


def metric_names_in(expr: str) -> set[str]:
    """Metric names a PromQL expression reads (Valley's, gRPC server's, process's and ``up``);
    label names such as ``grpc_code`` and string contents are not metric names."""
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    without_labels = re.sub(r"\{[^}]*\}", "{}", without_strings)
    without_by = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", without_labels
    )
    return set(_METRIC.findall(without_by))


def exported_names() -> set[str]:
    """Every sample name the server can export: the registry's families (counters with
    ``_total``, histograms with ``_bucket``/``_count``/``_sum``) and the snapshot gauges."""
    from scheduler import metrics
    from scheduler.domain import Cluster, load_scenario
    from scheduler.loop import Snapshot

    scenario = load_scenario()
    snap = Snapshot({}, {}, {}, Cluster(scenario), scenario, 12, 7, None)
    families = [*metrics.REGISTRY.collect(), *metrics.snapshot_families(snap)]
    names: set[str] = set()
    for f in families:
        if f.type == "counter":
            names.add(f"{f.name}_total")
        elif f.type == "histogram":
            names |= {f"{f.name}_bucket", f"{f.name}_count", f"{f.name}_sum"}
        elif f.type == "info":
            names.add(f"{f.name}_info")
        else:
            names.add(f.name)
    return names


# ----------------------------------------------------------------------------- a real server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PrometheusServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; raises AssertionError with Prometheus's message if it is invalid."""
        try:
            data = self.api("query", query=expr)
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{expr!r}: {e.read().decode(errors='replace')}") from None
        return list(data["result"])

    def targets_up(self, job: str) -> bool:
        data = self.api("targets")
        return any(
            t["labels"].get("job") == job and t["health"] == "up" for t in data["activeTargets"]
        )

    def wait_until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                if predicate():
                    return
            except (urllib.error.URLError, ConnectionError, AssertionError):
                pass
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited: {self.log.read_text()[-2000:]}")
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what}")


def write_config(path: Path, targets: Sequence[str], rule_files: Sequence[Path]) -> None:
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [{"job_name": "valley", "static_configs": [{"targets": list(targets)}]}],
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")


@pytest.fixture(scope="module")
def prometheus_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[Sequence[str]], PrometheusServer]]:
    """A factory: ``prometheus_server(["127.0.0.1:PORT"])`` starts Prometheus (job ``valley``,
    scrape and rule evaluation every second, the rules of deploy/prometheus/rules, storage in a
    temp dir) and waits until it is ready. Servers stop at the end of the module."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip(
            "prometheus not installed (Debian package prometheus; scripts/setup.sh --system)"
        )
    tmp_path = tmp_path_factory.mktemp("prometheus")
    started: list[PrometheusServer] = []

    def start(targets: Sequence[str]) -> PrometheusServer:
        n = len(started)
        config = tmp_path / f"prometheus-{n}.yml"
        write_config(config, targets, RULES)
        port = free_port()
        log = tmp_path / f"prometheus-{n}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / f'tsdb-{n}'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--storage.tsdb.retention.time=1h",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = PrometheusServer(f"http://127.0.0.1:{port}", process, log)
        started.append(server)

        def ready() -> bool:
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as r:
                return bool(r.status == 200)

        server.wait_until(ready, 30, "prometheus to be ready")
        return server

    yield start
    for server in started:
        _stop(server.process)


def _stop(process: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return int(process.returncode)


# ----------------------------------------------------------------------------- a Valley server


@dataclass
class ValleyProcess:
    """``valley serve`` in a subprocess on free loopback ports with SQLite in a temp dir."""

    process: subprocess.Popen[bytes]
    grpc_address: str
    metrics_address: str
    log: Path

    @classmethod
    def start(
        cls, directory: Path, *, scenario: str = "beijing-hebei", timeout: float = 60.0
    ) -> ValleyProcess:
        grpc_address = f"127.0.0.1:{free_port()}"
        metrics_address = f"127.0.0.1:{free_port()}"
        log = directory / "valley.log"
        command = [
            sys.executable,
            "-m",
            "scheduler.cli",
            "serve",
            f"--grpc-address={grpc_address}",
            f"--metrics-address={metrics_address}",
            f"--store=sqlite:///{directory}/valley.db",
            f"--scenario={scenario}",
        ]
        # this checkout's code, not the one the venv installs
        checkout = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "VALLEY_DATA_DIR": str(directory), "PYTHONPATH": checkout}
        with open(log, "wb") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=directory
            )
        valley = cls(process, grpc_address, metrics_address, log)
        valley.wait_ready(timeout)
        return valley

    def wait_ready(self, timeout: float) -> None:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        end = time.monotonic() + timeout
        with grpc.insecure_channel(self.grpc_address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < end:
                if self.process.poll() is not None:
                    raise AssertionError(f"valley serve exited: {self.log.read_text()[-3000:]}")
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.2)
        raise AssertionError(
            f"valley serve not SERVING in {timeout} s: {self.log.read_text()[-3000:]}"
        )

    def scrape(self) -> str:
        with urllib.request.urlopen(f"http://{self.metrics_address}/metrics", timeout=10) as r:
            return str(r.read().decode())

    def stop(self) -> int:
        return _stop(self.process)


@pytest.fixture(scope="module")
def valley_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValleyProcess]:
    """``valley serve`` (beijing-hebei, SQLite in a temp dir) for the tests of one module."""
    server = ValleyProcess.start(tmp_path_factory.mktemp("valley"))
    yield server
    server.stop()
