"""Helpers of the loop tests (no tests here): a clock the test moves, an observer that records,
a real SQLite store, and submitting as the service does (commit, then hand to the loop)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scheduler.domain import Cluster, Resources, Scenario, Workload, WorkloadSpec, WorkloadState
from scheduler.loop import CycleReport, LoopConfig, LoopObserver, SchedulingLoop, SolveFunction
from scheduler.solver import SolverParams, solve
from scheduler.store import Store, open_store

S = WorkloadState


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 7, 1, 4, 0, tzinfo=UTC)  # noon in Asia/Shanghai

    def __call__(self) -> datetime:
        return self.now


class Recorder:
    def __init__(self) -> None:
        self.submitted: list[str] = []
        self.cycles: list[CycleReport] = []
        self.changes: list[tuple[str, S, S]] = []

    def on_submitted(self, workloads: Sequence[Workload]) -> None:
        self.submitted += [w.id for w in workloads]

    def on_cycle(self, report: CycleReport) -> None:
        self.cycles.append(report)

    def on_state_change(self, workload: Workload, old: S) -> None:
        self.changes.append((workload.id, old, workload.state))


def until(pred: Callable[[], bool], timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


# fixtures, named apart from their fixture names so that a test module can import them
@pytest.fixture(name="store")
def store_fixture(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path}/v.db")
    yield s
    s.close()


@pytest.fixture(name="clock")
def clock_fixture() -> Clock:
    return Clock()


@pytest.fixture(name="recorder")
def recorder_fixture() -> Recorder:
    return Recorder()


@contextmanager
def running(
    store: Store,
    scenario: Scenario,
    clock: Clock,
    *,
    observers: Sequence[LoopObserver] = (),
    solve_fn: SolveFunction = solve,
    **config: Any,
) -> Iterator[SchedulingLoop]:
    """A started loop with ``LoopConfig(**config)``, stopped on leaving. Its solves use one
    CP-SAT worker: an in-process loop's solver shares pytest's process, and multi-worker
    CP-SAT has known rare aborts (OR-Tools CHECK failures) that would take the whole run down;
    the server solves in a solver process of its own."""
    lp = SchedulingLoop(
        store,
        scenario,
        params=SolverParams(num_workers=1),
        observers=observers,
        config=LoopConfig(**config),
        clock=clock,
        solve_fn=solve_fn,
    )
    lp.start()
    try:
        yield lp
    finally:
        lp.stop()


def submit(store: Store, loop: SchedulingLoop, *specs: WorkloadSpec) -> list[Workload]:
    sub = store.submit("", "", specs, datetime.now(UTC))
    loop.submitted(sub.workloads)
    return list(sub.workloads)


def cpu(cores: int, **kw: object) -> WorkloadSpec:
    return WorkloadSpec(tenant="t", resources=Resources(cores * 1000, 1024), **kw)  # type: ignore[arg-type]


def cancel(store: Store, loop: SchedulingLoop, w: Workload) -> None:
    change = store.cancel(w.id, datetime.now(UTC))
    loop.state_changed(change.workload, change.previous_state)


def state(store: Store, w: Workload) -> S:
    return store.get(w.id).state


def used_cpu(cluster: Cluster) -> int:
    return int((cluster.cap_cpu - cluster.free_cpu).sum())


def same_capacity(a: Cluster, b: Cluster) -> bool:
    return all(
        np.array_equal(getattr(a, name), getattr(b, name))
        for name in ("free_cpu", "free_mem", "gpu_free", "replicas_on")
    )
