"""``valley demo`` against a real ``valley serve`` subprocess: bounded by --duration, it submits
the mix through gRPC and cancels some of it; the server sees every kind of workload."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from typing import TYPE_CHECKING

import grpc
import pytest
from click.testing import CliRunner

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler._proto.valley.v1 import placement_pb2_grpc as pb_grpc
from scheduler.cli.demo import demo

if TYPE_CHECKING:
    from tests.prom import ValleyProcess

pytest_plugins = ["tests.prom"]
pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def all_workloads(address: str) -> list[pb.Workload]:
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.PlacementServiceStub(channel)
        out: list[pb.Workload] = []
        token = ""
        while True:
            page = stub.ListWorkloads(
                pb.ListWorkloadsRequest(page_size=1000, page_token=token), timeout=30
            )
            out += page.workloads
            token = page.next_page_token
            if not token:
                return out


def test_demo_submits_the_mix_for_its_duration_and_cancels_some(
    valley_server: ValleyProcess,
) -> None:
    result = CliRunner().invoke(
        demo,
        [
            f"--server={valley_server.grpc_address}",
            "--rate=25",
            "--duration=5",
            "--interval=0.25",
            "--cancel-fraction=0.3",
            "--misconfigured=0.05",
            "--seed=3",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "errors: none" in result.output
    workloads = all_workloads(valley_server.grpc_address)
    submitted = int(result.output.split("submitted ")[1].split()[0])
    assert len(workloads) == submitted >= 80  # 25/s for 5 s, less what the last batch missed
    states = Counter(w.state for w in workloads)
    assert states[pb.WORKLOAD_STATE_PLACED] > 0
    assert states[pb.WORKLOAD_STATE_CANCELLED] > 0
    specs = [w.spec for w in workloads]
    assert any(s.max_latency_ms == 2.0 for s in specs)  # interactive
    assert any(s.max_latency_ms == 5.0 and not s.resources.gpu_millis for s in specs)  # regional
    assert any(s.kind == pb.WORKLOAD_KIND_BATCH and s.duration_s > 0 for s in specs)
    assert any(s.resources.gpus for s in specs) and any(s.resources.gpu_millis for s in specs)
    # interactive services (SLO 2 ms from zhongguancun) can only be in E-Town
    for w in workloads:
        if w.spec.max_latency_ms == 2.0 and w.state == pb.WORKLOAD_STATE_PLACED:
            assert {p.site for p in w.placements} == {"etown"}


def test_demo_without_a_server_fails_fast_with_a_message() -> None:
    result = CliRunner().invoke(
        demo, ["--server=127.0.0.1:1", "--duration=1", "--connect-timeout=0.5"]
    )
    assert result.exit_code == 2
    assert "cannot reach a server at 127.0.0.1:1" in result.output


def test_demo_talks_to_valley_server_when_the_variable_names_one() -> None:
    result = CliRunner().invoke(
        demo, ["--duration=1", "--connect-timeout=0.5"], env={"VALLEY_SERVER": "127.0.0.1:1"}
    )
    assert result.exit_code == 2
    assert "cannot reach a server at 127.0.0.1:1" in result.output


def test_valley_cli_offers_the_demo_command() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", "demo", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "--rate" in run.stdout and "--duration" in run.stdout
