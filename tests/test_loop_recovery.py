"""The loop loses neither work nor capacity when a cycle fails: a store whose write raises an
unexpected error (a real SQLite store that fails once, as a bug would), and stored placements
that no longer fit the scenario on restart."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from scheduler.domain import Cost, ReplicaPlacement, Scenario, Workload
from scheduler.loop import LoopConfig, SchedulingLoop
from scheduler.store import CycleCommit, CycleOutcome, StateChange, Store
from scheduler.store.sqlite import SqliteStore
from tests.test_loop_support import (
    Clock,
    S,
    cancel,
    clock_fixture,  # noqa: F401
    cpu,
    running,
    state,
    store_fixture,  # noqa: F401
    submit,
    until,
    used_cpu,
)


class FailingStore(SqliteStore):
    """A real SQLite store whose next call of a method named in ``fail_next`` raises a
    ``RuntimeError`` (not a ``StoreError``) before it writes anything."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.fail_next: dict[str, int] = {}

    def _maybe_fail(self, method: str) -> None:
        if self.fail_next.get(method, 0) > 0:
            self.fail_next[method] -= 1
            raise RuntimeError(f"{method} failed")

    def commit_cycle(self, cycle: CycleCommit) -> CycleOutcome:
        self._maybe_fail("commit_cycle")
        return super().commit_cycle(cycle)

    def complete(self, workloads: Sequence[Workload], now: datetime) -> tuple[StateChange, ...]:
        self._maybe_fail("complete")
        return super().complete(workloads, now)


@pytest.fixture
def failing(tmp_path: Path) -> Iterator[FailingStore]:
    s = FailingStore(f"sqlite:///{tmp_path}/v.db")
    yield s
    s.close()


QUICK: dict[str, Any] = {"batch_window_s": 0.0, "retry_after_error_s": 0.01}


@pytest.mark.parametrize("solver_process", [False, True], ids=["in-process", "solver-process"])
def test_a_batch_is_placed_later_when_its_commit_fails_with_an_unexpected_error(
    failing: FailingStore, tiny: Scenario, clock: Clock, solver_process: bool
) -> None:
    with running(failing, tiny, clock, **QUICK, solver_process=solver_process) as lp:
        failing.fail_next["commit_cycle"] = 1
        ws = submit(failing, lp, cpu(1), cpu(2))
        until(lambda: all(state(failing, w) == S.PLACED for w in ws), timeout=10)
        assert failing.fail_next["commit_cycle"] == 0  # it did fail once
        assert lp.wait_idle(10)
        assert used_cpu(lp.snapshot().cluster) == 3000
        assert lp.snapshot().counts_by_state == {S.PENDING: 0, S.PLACED: 2}


def test_capacity_a_cancel_frees_is_kept_free_when_the_same_cycle_fails(
    failing: FailingStore, tiny: Scenario, clock: Clock
) -> None:
    # a long batching window: the cancel and the submission are handled in one cycle, whose
    # commit then fails
    config: dict[str, Any] = {**QUICK, "batch_window_s": 0.5}
    with running(failing, tiny, clock, **config, solver_process=False) as lp:
        (held,) = submit(failing, lp, cpu(4))
        until(lambda: state(failing, held) == S.PLACED)
        assert lp.wait_idle(10)
        failing.fail_next["commit_cycle"] = 1
        cancel(failing, lp, held)
        (new,) = submit(failing, lp, cpu(1))
        until(lambda: state(failing, new) == S.PLACED, timeout=10)
        assert failing.fail_next["commit_cycle"] == 0
        assert lp.wait_idle(10)
        assert used_cpu(lp.snapshot().cluster) == 1000  # the cancelled 4 cores are free


def test_a_workload_completes_later_when_recording_its_completion_fails_unexpectedly(
    failing: FailingStore, tiny: Scenario, clock: Clock
) -> None:
    with running(failing, tiny, clock, **QUICK, solver_process=False) as lp:
        (w,) = submit(failing, lp, cpu(4, duration_s=60))
        until(lambda: state(failing, w) == S.PLACED)
        failing.fail_next["complete"] = 1
        clock.now += timedelta(seconds=61)
        lp.wake()
        until(lambda: state(failing, w) == S.COMPLETED, timeout=10)
        assert failing.fail_next["complete"] == 0
        until(lambda: used_cpu(lp.snapshot().cluster) == 0, timeout=10)


def placements(*nodes: str) -> tuple[ReplicaPlacement, ...]:
    return tuple(ReplicaPlacement(i, n.split("/")[0], n) for i, n in enumerate(nodes))


def store_placed(store: Store, now: datetime, *placed: tuple[int, tuple[str, ...]]) -> None:
    """Record PLACED workloads as a cycle would, without checking that they fit: (cores per
    replica, one node per replica) each."""
    specs = [cpu(cores, replicas=len(nodes)) for cores, nodes in placed]
    ws = store.submit("", "", specs, now).workloads
    store.commit_cycle(
        CycleCommit(
            workloads={w.id: w for w in ws},
            placed={
                w.id: (placements(*nodes), Cost()) for w, (_, nodes) in zip(ws, placed, strict=True)
            },
            unschedulable={},
            pending={},
            now=now,
        )
    )


@pytest.mark.parametrize(
    ("placed", "held_cpu"),
    [
        # the second replica's node is not in the scenario
        ([(1, ("near/cpu-0000", "near/cpu-9999"))], 0),
        # 3 cores, then 2 + 2 cores of which the second replica does not fit beside the 3
        ([(3, ("near/cpu-0000",)), (2, ("near/cpu-0001", "near/cpu-0000"))], 3000),
    ],
    ids=["unknown-node", "over-capacity"],
)
def test_a_stored_placement_that_no_longer_fits_holds_no_capacity_after_a_restart(
    store: Store,
    tiny: Scenario,
    clock: Clock,
    placed: list[tuple[int, tuple[str, ...]]],
    held_cpu: int,
) -> None:
    store_placed(store, clock.now, *placed)
    with running(store, tiny, clock, solver_process=False) as lp:
        assert used_cpu(lp.snapshot().cluster) == held_cpu


def test_a_batch_solved_as_the_loop_stops_stays_pending_without_a_failure_reason(
    store: Store, tiny: Scenario
) -> None:
    clock = Clock()
    lp = SchedulingLoop(store, tiny, config=LoopConfig(solver_process=False), clock=clock)
    lp.load()
    (w,) = submit(store, lp, cpu(1))
    lp._solver.abandon()  # as stop() does while a cycle is about to solve
    lp.run_cycle()
    after = store.get(w.id)
    assert after.state == S.PENDING and after.reason == ""  # not "the solver failed"
