"""The solver client (``scheduler.loop.solver_client``): the child process answers as the solver
does here, what crosses to it comes back equal, and a died child is replaced by this process
until it may start again."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scheduler.domain import Cluster, Resources, Scenario, WorkloadSpec
from scheduler.loop import SolverClient, SolverProcess, solver_start
from scheduler.loop.solver_client import dumps
from scheduler.solver import PendingWorkload, PlacementResult, Problem, SolverParams, solve
from tests.test_loop_support import cpu, until


def test_the_solver_process_answers_as_the_solver_does_in_this_process(tiny: Scenario) -> None:
    cluster = Cluster(tiny)
    cluster.allocate(cluster.index["near/cpu-0000"], Resources(3000, 1024))
    workloads = tuple(
        PendingWorkload(f"w{i}", spec)
        for i, spec in enumerate(
            [
                cpu(1, replicas=2),
                cpu(2, labels={"team": "a"}),
                WorkloadSpec(tenant="t", resources=Resources(500, 1024, gpu_millis=300)),
                cpu(64),  # never fits
            ]
        )
    )
    problem = Problem(tiny, cluster, workloads, hour=12, month=7)
    params = SolverParams(mip_bound=False)
    here = solve(problem, params, seed=3)
    child = SolverProcess(tiny)
    try:
        there = child.solve(problem, params, seed=3, deadline=None)
    finally:
        child.close()
    assert there.placements == here.placements
    assert there.unplaced == here.unplaced
    assert there.costs == here.costs
    assert there.objective == pytest.approx(here.objective)
    assert not child.alive


def test_what_crosses_to_the_solver_process_comes_back_equal(tiny: Scenario) -> None:
    spec = WorkloadSpec(
        tenant="t",
        name="n",
        resources=Resources(500, 1024, gpus=1),
        replicas=2,
        labels={"a": "b"},
        allowed_sites=("green",),
        gpu_models=("A100",),
    )
    result = solve(
        Problem(tiny, Cluster(tiny), (PendingWorkload("g", spec), PendingWorkload("x", cpu(64))))
    )
    assert result.unplaced["x"].reasons  # reasons cross too
    assert pickle.loads(dumps(result)) == result
    assert pickle.loads(dumps((PendingWorkload("g", spec),))) == (PendingWorkload("g", spec),)


def test_a_client_whose_solver_process_died_starts_it_again_then_solves_here_for_a_while(
    tiny: Scenario,
) -> None:
    problem = Problem(tiny, Cluster(tiny), (PendingWorkload("w", cpu(1)),), hour=12, month=7)
    params = SolverParams(mip_bound=False)
    client = SolverClient(tiny, process=True)
    client.start()
    try:
        first = client.pid
        assert first is not None and client.alive
        os.kill(first, signal.SIGKILL)
        until(lambda: not client.alive)
        placed = client.solve(problem, params, time.monotonic() + 5).placements
        assert placed == solve(problem, params).placements
        assert client.alive and client.pid != first  # started again at once
        second = client.pid
        assert second is not None
        os.kill(second, signal.SIGKILL)
        until(lambda: not client.alive)
        # died again within RESTART_AFTER_S of its start: solved in this process meanwhile
        assert client.solve(problem, params, time.monotonic() + 5).placements == placed
        assert not client.alive
        assert not client.send(problem, params, time.monotonic() + 5)
    finally:
        client.close()


def test_a_client_without_a_solver_process_solves_here_and_sends_nothing(tiny: Scenario) -> None:
    problem = Problem(tiny, Cluster(tiny), (PendingWorkload("w", cpu(1)),), hour=12, month=7)
    client = SolverClient(tiny, process=False)
    client.start()
    assert not client.can_send and not client.alive and client.pid is None
    assert not client.send(problem, SolverParams(), time.monotonic() + 5)
    assert client.solve(problem, SolverParams(), time.monotonic() + 5).placements["w"]
    client.close()


def _solve_and_tell(
    problem: Problem, params: SolverParams, *, seed: int, deadline: float | None
) -> PlacementResult:
    """``solve``, after writing facts about the process it runs in to the file its first
    workload's id names."""
    facts = {"parent": os.getppid(), "inherited": solver_start.imports_inherited()}
    Path(problem.workloads[0].id).write_text(json.dumps(facts))
    return solve(problem, params, seed=seed, deadline=deadline)


@pytest.mark.skipif(
    "forkserver" not in multiprocessing.get_all_start_methods(), reason="no forkserver here"
)
def test_solver_processes_fork_with_the_solver_imported_from_one_server_without_grpc(
    tiny: Scenario, tmp_path: Path
) -> None:
    params = SolverParams(mip_bound=False)
    facts = []
    for i in range(2):  # the second as the first: nothing left to import for either
        told = tmp_path / f"{i}.json"
        problem = Problem(tiny, Cluster(tiny), (PendingWorkload(str(told), cpu(1)),), 12, 7)
        child = SolverProcess(tiny, _solve_and_tell)
        try:
            there = child.solve(problem, params, seed=0, deadline=None)
        finally:
            child.close()
        assert there.placements == solve(problem, params).placements
        facts.append(json.loads(told.read_text()))
    (server,) = {f["parent"] for f in facts}  # one forkserver forked both
    assert server != os.getpid()
    # it imported the solver package (run pytest from the checkout, else it preloads no code of
    # this one), OR-Tools, and not grpc: no grpc thread was there to be forked
    assert all(f["inherited"] for f in facts)
    maps = Path(f"/proc/{server}/maps").read_text()
    assert "ortools" in maps and "grpc" not in maps


FALLBACK = """
from tests.conftest import TINY
from scheduler.domain import Cluster, parse_scenario
from scheduler.loop import SolverProcess, solver_start
from scheduler.solver import PendingWorkload, Problem, SolverParams
from tests.test_loop_support import cpu

solver_start.PRELOAD_THIRD_PARTY = ("broken_at_import", *solver_start.PRELOAD_THIRD_PARTY)
scenario = parse_scenario(TINY, "tiny.toml")
problem = Problem(scenario, Cluster(scenario), (PendingWorkload("w", cpu(1)),), 12, 7)
child = SolverProcess(scenario)
result = child.solve(problem, SolverParams(mip_bound=False), seed=0, deadline=None)
child.close()
print(type(child._process).__name__, sorted(result.placements))
"""


@pytest.mark.skipif(
    "forkserver" not in multiprocessing.get_all_start_methods(), reason="no forkserver here"
)
def test_solver_processes_are_spawned_when_the_forkserver_dies_at_its_preload(
    tmp_path: Path,
) -> None:
    (tmp_path / "broken_at_import.py").write_text("raise RuntimeError('not ImportError')\n")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", FALLBACK],
        capture_output=True,
        text=True,
        cwd=root,  # this checkout's code, whichever one the environment has installed
        env={**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{tmp_path}"},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "SpawnProcess ['w']\n", out.stderr
    assert "the solver's forkserver failed" in out.stderr
