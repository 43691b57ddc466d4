"""The loop's work queue: priority then arrival order, one place per workload, and a failed
cycle's taken workloads put back."""

from __future__ import annotations

from scheduler.domain import Workload
from scheduler.loop.queue import WorkQueue
from tests.test_loop_support import cpu


def workloads(*priorities: int) -> list[Workload]:
    return [Workload(f"w{i}", cpu(1, priority=p)) for i, p in enumerate(priorities)]


def ids(batch: list[Workload]) -> list[str]:
    return [w.id for w in batch]


def test_a_batch_is_taken_by_priority_then_in_arrival_order() -> None:
    q = WorkQueue()
    for w in workloads(0, 2, 0, 2):
        q.add(w)
    assert ids(q.take(3)) == ["w1", "w3", "w0"]
    assert ids(q.take(3)) == ["w2"]
    assert not q.has_ready and len(q) == 4  # taken, still PENDING


def test_a_workload_added_or_requeued_twice_is_taken_once() -> None:
    q = WorkQueue()
    (w,) = workloads(0)
    assert q.add(w)
    assert not q.add(w)
    q.requeue([w])  # ready already: a second heap entry, which taking skips
    assert ids(q.take(10)) == ["w0"]
    assert q.take(10) == []


def test_a_requeued_workload_goes_behind_those_of_its_priority() -> None:
    q = WorkQueue()
    a, b = workloads(1, 1)
    q.add(a)
    q.add(b)
    (first,) = q.take(1)
    q.requeue([first])
    assert ids(q.take(2)) == ["w1", "w0"]


def test_a_waiting_workload_is_ready_again_only_once_woken() -> None:
    q = WorkQueue()
    (w,) = workloads(0)
    q.add(w)
    q.wait(*q.take(1))
    assert q.take(10) == [] and "w0" in q
    q.wake()
    assert ids(q.take(10)) == ["w0"]


def test_a_removed_workload_is_never_taken() -> None:
    q = WorkQueue()
    a, b = workloads(0, 0)
    q.add(a)
    q.add(b)
    q.remove("w0")
    assert ids(q.take(10)) == ["w1"]
    assert "w0" not in q and len(q) == 1


def test_restore_makes_taken_workloads_ready_again_but_those_kept() -> None:
    q = WorkQueue()
    for w in workloads(0, 0, 0):
        q.add(w)
    q.take(3)
    assert q.restore(keep={"w1"}) == 2
    assert ids(q.take(10)) == ["w0", "w2"]
    assert q.restore() == 3  # w1 was still taken
