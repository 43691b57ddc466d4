"""The loop's work queue: priority then arrival order, one place per workload, and a failed
cycle's taken workloads put back."""

from __future__ import annotations

from scheduler.domain import Resources, Workload, WorkloadSpec
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


def test_work_that_did_not_fit_is_ready_again_when_capacity_was_freed_while_it_was_solved() -> None:
    # the cycle that frees capacity (a cancel) wakes the waiting work before it commits the
    # batch solved meanwhile on the capacity before: what that batch left pending must not
    # wait for a next freeing that may never come
    q = WorkQueue()
    a, b = workloads(0, 0)
    q.add(a)
    q.add(b)
    (taken,) = q.take(1)
    q.wake()  # capacity freed while ``taken`` was being solved
    q.wait(taken)  # its solve, on the capacity before, did not fit it
    again = q.take(10)
    assert ids(again) == ["w1", "w0"]
    for w in again:  # taken after that freeing, and did not fit: they wait
        q.wait(w)
    assert q.take(10) == []


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


def tenant_workload(i: int, tenant: str, replicas: int = 1, priority: int = 0) -> Workload:
    spec = WorkloadSpec(
        tenant=tenant, resources=Resources(100, 64), replicas=replicas, priority=priority
    )
    return Workload(f"{tenant}{i}", spec)


def test_a_batch_stops_at_its_replica_bound_but_takes_one_workload_however_large() -> None:
    q = WorkQueue()
    for i in range(5):
        q.add(tenant_workload(i, "a", replicas=400))
    assert ids(q.take(100, max_replicas=1000)) == ["a0", "a1", "a2"]
    q = WorkQueue()
    q.add(tenant_workload(0, "b", replicas=5000))
    q.add(tenant_workload(1, "b", replicas=1))
    assert ids(q.take(100, max_replicas=1000)) == ["b0"]


def test_another_tenants_work_goes_next_when_one_tenant_has_a_backlog() -> None:
    q = WorkQueue()
    for i in range(100):
        q.add(tenant_workload(i, "big", replicas=1000))
    q.add(tenant_workload(0, "small"))
    first = q.take(3000, max_replicas=2000)
    assert "small0" in ids(first)
    # priority comes first; then the tenants alternate by replicas served
    q.add(tenant_workload(1, "small", priority=5))
    q.add(tenant_workload(2, "small"))
    assert ids(q.take(3000, max_replicas=3000))[:3] == ["small1", "big2", "small2"]


def test_a_tenant_that_becomes_ready_starts_level_with_the_least_served() -> None:
    q = WorkQueue()
    for i in range(10):
        q.add(tenant_workload(i, "a", replicas=100))
    q.take(3000, max_replicas=500)  # a has been served 500 replicas
    for i in range(10):
        q.add(tenant_workload(i, "b", replicas=100))
    # b gets no 500-replica head start: the two alternate
    assert [w.spec.tenant for w in q.take(4, max_replicas=10_000)] == ["a", "b", "a", "b"]
