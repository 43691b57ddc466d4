"""A solver that fails must not lose work: the loop retries the batch in smaller batches, and a
single workload the solver still fails on waits, PENDING with the reason code ``error``, until
capacity is freed. The solver is the real one behind the loop's ``solve_fn`` seam, made to fail
on a batch larger than two workloads or on one labelled ``poison``."""

from __future__ import annotations

import time
from typing import Any

import pytest

from scheduler.domain import Scenario
from scheduler.solver import PlacementResult, Problem, SolverParams, solve
from scheduler.store import Store
from tests.test_loop_support import (
    Clock,
    Recorder,
    S,
    cancel,
    clock_fixture,  # noqa: F401
    cpu,
    recorder_fixture,  # noqa: F401
    running,
    state,
    store_fixture,  # noqa: F401
    submit,
    until,
)

IN_PROCESS: dict[str, Any] = {"batch_window_s": 0.0, "solver_process": False}


class FailingSolver:
    """``solve()``, except that it raises on a batch of more than ``max_batch`` workloads or
    with a workload labelled ``poison``; notes the batch sizes it is given (in this process:
    a solver process has its own copy)."""

    def __init__(self, max_batch: int = 1_000_000) -> None:
        self.max_batch = max_batch
        self.batches: list[int] = []
        self.poison_tries = 0

    def __call__(
        self, problem: Problem, params: SolverParams, *, seed: int, deadline: float | None
    ) -> PlacementResult:
        if [w.id for w in problem.workloads] != ["warm-up"]:
            self.batches.append(len(problem.workloads))
        if any("poison" in w.spec.labels for w in problem.workloads):
            self.poison_tries += 1
            raise RuntimeError("the solver failed on a poison workload")
        if len(problem.workloads) > self.max_batch:
            raise RuntimeError(f"the solver failed on {len(problem.workloads)} workloads")
        return solve(problem, params, seed=seed, deadline=deadline)


def test_a_batch_the_solver_fails_on_is_retried_in_batches_an_eighth_as_large(
    store: Store, tiny: Scenario, clock: Clock, recorder: Recorder
) -> None:
    solver = FailingSolver(max_batch=2)
    queued = store.submit("", "", [cpu(1) for _ in range(16)], clock.now).workloads
    # the 16 workloads queued before the loop starts are its first batch
    with running(store, tiny, clock, **IN_PROCESS, observers=[recorder], solve_fn=solver) as lp:
        until(lambda: all(state(store, w) == S.PLACED for w in queued))
        assert lp.wait_idle(10)
    assert solver.batches == [16] + [2] * 8
    assert [c.batch_workloads for c in recorder.cycles] == [2] * 8
    assert all(not store.get(w.id).reason for w in queued)


@pytest.mark.parametrize("solver_process", [False, True], ids=["in-process", "solver-process"])
def test_a_single_workload_the_solver_fails_on_waits_with_the_reason_error(
    store: Store, tiny: Scenario, clock: Clock, solver_process: bool
) -> None:
    solver = FailingSolver()
    config: dict[str, Any] = {"batch_window_s": 0.2, "solver_process": solver_process}
    with running(store, tiny, clock, **config, solve_fn=solver) as lp:
        *fine, poison = submit(store, lp, cpu(1), cpu(1), cpu(1), cpu(1, labels={"poison": "yes"}))
        until(lambda: store.pending_reason_codes().get(poison.id) == "error")
        until(lambda: all(state(store, w) == S.PLACED for w in fine))
        stored = store.get(poison.id)
        assert stored.state == S.PENDING
        assert stored.reason == "does not fit now: the solver failed on this workload"
        assert lp.wait_idle(10)
        snap = lp.snapshot()
        assert snap.pending_by_reason == {"error": 1}
        assert snap.counts_by_state[S.PLACED] == 3


def test_a_workload_the_solver_failed_on_is_tried_again_once_capacity_is_freed(
    store: Store, tiny: Scenario, clock: Clock
) -> None:
    solver = FailingSolver()
    with running(store, tiny, clock, **IN_PROCESS, solve_fn=solver) as lp:
        (held,) = submit(store, lp, cpu(1))
        until(lambda: state(store, held) == S.PLACED)
        (poison,) = submit(store, lp, cpu(1, labels={"poison": "yes"}))
        until(lambda: store.pending_reason_codes().get(poison.id) == "error")
        assert lp.wait_idle(10)
        tries = solver.poison_tries
        time.sleep(0.2)
        assert solver.poison_tries == tries, "it waits: not tried every cycle"
        cancel(store, lp, held)
        until(lambda: solver.poison_tries > tries)
        assert lp.wait_idle(10)
        assert state(store, poison) == S.PENDING
        assert lp.snapshot().pending_by_reason == {"error": 1}
