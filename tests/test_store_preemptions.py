"""``Store.preempt`` and the preemption history, against SQLite and a real PostgreSQL server."""

from __future__ import annotations

from datetime import timedelta

from scheduler.domain import Cost, ReplicaPlacement
from scheduler.store import Displacement, Store
from tests.test_store_contract import T0, S, events_of, place, reopen, spec, store, store_url

pytest_plugins = ["tests.pg"]
__all__ = ["store", "store_url"]  # the fixtures, run against both stores

LATER = T0 + timedelta(minutes=5)


def test_a_preemption_places_the_preemptor_and_sends_its_victim_back_with_events(
    store: Store,
) -> None:
    victim, bystander, hi = store.submit(
        "", "", [spec(name="batch"), spec(name="other"), spec(name="hi", priority=2)], T0
    ).workloads
    place(store, [victim.id, bystander.id])
    placed_victim = store.get(victim.id)
    reps = (ReplicaPlacement(0, "green", "green/gpu-0000", 1.0),)
    with store.subscribe() as sub:
        out = store.preempt(
            [Displacement(store.get(hi.id), reps, Cost(0.2), (placed_victim,))], LATER
        )
        events = events_of(sub, 3)
    assert [w.id for w in out.placed] == [hi.id]
    assert [(w.id, by) for w, by in out.preempted] == [(victim.id, hi.id)]
    assert [(e.workload.id, e.previous_state, e.workload.state) for e in events] == [
        (victim.id, S.PLACED, S.PREEMPTED),
        (victim.id, S.PREEMPTED, S.PENDING),
        (hi.id, S.PENDING, S.PLACED),
    ]
    assert f"preempted by {hi.id} (priority 2)" in events[0].workload.reason
    store = reopen(store)  # committed: a restart keeps all of it
    try:
        v = store.get(victim.id)
        assert v.state == S.PENDING and not v.placements and hi.id in v.reason
        assert store.get(hi.id).state == S.PLACED and store.get(hi.id).placements[0].node
        assert store.get(bystander.id).state == S.PLACED
        (record,) = store.preemptions_since(T0)
        assert (record.workload_id, record.preemptor_id) == (victim.id, hi.id)
        assert (record.preemptor_priority, record.priority, record.site) == (2, 0, "green")
        assert store.preemptions_of(victim.id) == store.preemptions_of(hi.id) == (record,)
        assert store.preemptions_since(LATER + timedelta(seconds=1)) == ()
        assert {w.id for w in store.active_workloads()} == {victim.id, bystander.id, hi.id}
    finally:
        store.close()


def test_a_cancelled_preemptor_displaces_nobody(store: Store) -> None:
    victim, hi = store.submit("", "", [spec(), spec(name="hi", priority=1)], T0).workloads
    place(store, [victim.id])
    pending_hi = store.get(hi.id)
    store.cancel(hi.id, T0)
    reps = (ReplicaPlacement(0, "green", "green/gpu-0000", 1.0),)
    out = store.preempt([Displacement(pending_hi, reps, Cost(), (store.get(victim.id),))], LATER)
    assert out.skipped == {hi.id} and not out.placed and not out.preempted
    assert store.get(victim.id).state == S.PLACED
    assert store.preemptions_since(T0) == ()


def test_a_victim_cancelled_meanwhile_is_left_cancelled(store: Store) -> None:
    victim, hi = store.submit("", "", [spec(), spec(name="hi", priority=1)], T0).workloads
    place(store, [victim.id])
    placed_victim = store.get(victim.id)
    store.cancel(victim.id, T0)
    reps = (ReplicaPlacement(0, "green", "green/gpu-0000", 1.0),)
    out = store.preempt([Displacement(store.get(hi.id), reps, Cost(), (placed_victim,))], LATER)
    assert out.gone == {victim.id} and [w.id for w in out.placed] == [hi.id]
    assert store.get(victim.id).state == S.CANCELLED
