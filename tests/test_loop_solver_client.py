"""The solver client (``scheduler.loop.solver_client``): the child process answers as the solver
does here, what crosses to it comes back equal, and a died child is replaced by this process
until it may start again."""

from __future__ import annotations

import os
import pickle
import signal
import time

import pytest

from scheduler.domain import Cluster, Resources, Scenario, WorkloadSpec
from scheduler.loop import SolverClient, SolverProcess
from scheduler.loop.solver_client import dumps
from scheduler.solver import PendingWorkload, Problem, SolverParams, solve
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
