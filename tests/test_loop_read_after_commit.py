"""What other threads read of the loop (``SchedulingLoop.snapshot``: ListSites, the metrics)
shows every change the store already shows: a reader that saw a placement in the store never
gets a cluster without it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from scheduler.domain import Scenario, Workload
from scheduler.loop import SchedulingLoop
from scheduler.loop.scheduling import VIEW_WAIT_S
from scheduler.store import CycleCommit, CycleOutcome, Store
from scheduler.store.sqlite import SqliteStore
from tests.test_loop_support import (
    Clock,
    S,
    cancel,
    clock_fixture,  # noqa: F401
    cpu,
    running,
    store_fixture,  # noqa: F401
    submit,
    until,
    used_cpu,
)


class PausingStore(SqliteStore):
    """A real SQLite store that holds the loop thread just after a cycle that placed work has
    committed (the placements are in the store), until the test releases it."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.committed = threading.Event()
        self.release = threading.Event()

    def commit_cycle(self, commit: CycleCommit) -> CycleOutcome:
        outcome = super().commit_cycle(commit)
        if outcome.placed and not self.committed.is_set():
            self.committed.set()
            self.release.wait(30)
        return outcome


@contextmanager
def held_just_after_placing(
    tiny: Scenario, clock: Clock, tmp_path: Path
) -> Iterator[tuple[PausingStore, SchedulingLoop, Workload]]:
    """A running loop held in its store write just after placing a 2-core workload."""
    store = PausingStore(f"sqlite:///{tmp_path}/v.db")
    try:
        with running(store, tiny, clock, batch_window_s=0.01) as lp:
            (w,) = submit(store, lp, cpu(2))
            assert store.committed.wait(20)
            yield store, lp, w
            store.release.set()
    finally:
        store.release.set()
        store.close()


def cpu_in_snapshot(lp: SchedulingLoop, wait_s: float) -> list[int]:
    """The CPU used in ``lp.snapshot()``'s cluster, read on another thread within ``wait_s``
    seconds (empty if it was not back by then)."""
    seen: list[int] = []
    reader = threading.Thread(target=lambda: seen.append(used_cpu(lp.snapshot().cluster)))
    reader.start()
    reader.join(wait_s)
    return seen


def test_a_snapshot_read_after_the_store_shows_a_placement_shows_it_too(
    tiny: Scenario, clock: Clock, tmp_path: Path
) -> None:
    with held_just_after_placing(tiny, clock, tmp_path) as (store, lp, w):
        assert store.get(w.id).state == S.PLACED  # the store shows it
        threading.Timer(0.5, store.release.set).start()  # the loop goes on after 0.5 s
        # a stale snapshot would be back at once, without the placement
        assert cpu_in_snapshot(lp, 10) == [2000]


def test_a_snapshot_is_answered_from_the_copies_it_has_while_a_store_write_hangs(
    tiny: Scenario, clock: Clock, tmp_path: Path
) -> None:
    with held_just_after_placing(tiny, clock, tmp_path) as (_, lp, _w):
        # the loop is still held in its write after VIEW_WAIT_S: the reader gets what there is
        assert cpu_in_snapshot(lp, VIEW_WAIT_S + 8) == [0]


def test_a_snapshot_read_after_a_cancel_shows_the_capacity_it_frees(
    store: Store, tiny: Scenario, clock: Clock
) -> None:
    # a batching window of 0.3 s: the loop takes the cancel up that much later
    with running(store, tiny, clock, batch_window_s=0.3) as lp:
        (w,) = submit(store, lp, cpu(2))
        until(lambda: store.get(w.id).state == S.PLACED)
        assert used_cpu(lp.snapshot().cluster) == 2000
        cancel(store, lp, w)
        assert used_cpu(lp.snapshot().cluster) == 0
