"""Leadership on the store: one lease holder at a time, its commits fenced by its term, events
of every server reaching every server's subscribers, and SQLite refusing a second server."""

from __future__ import annotations

from pathlib import Path

import pytest

from scheduler.domain import Cost, ReplicaPlacement, WorkloadState
from scheduler.store import CycleCommit, StoreError, open_store
from scheduler.store.base import NotLeaderError
from scheduler.store.sql import SqlStore
from tests.test_store_contract import T0, spec

pytest_plugins = ["tests.pg"]


def _sql(url: str) -> SqlStore:
    s = open_store(url)
    assert isinstance(s, SqlStore)
    return s


def _placing(store: SqlStore, wid: str) -> CycleCommit:
    w = store.get(wid)
    placed = {wid: ((ReplicaPlacement(0, "green", "green/cpu-0000", 1.0),), Cost())}
    return CycleCommit({wid: w}, placed, {}, {}, T0)


@pytest.mark.integration
def test_a_deposed_leaders_placement_is_refused_by_the_database_when_a_new_term_began(
    postgres_url: str,
) -> None:
    a, b = _sql(postgres_url), _sql(postgres_url)
    try:
        lease_a, lease_b = a.leader_lease("a"), b.leader_lease("b")
        term_a = lease_a.try_acquire()
        assert term_a is not None
        assert lease_b.try_acquire() is None  # one leader at a time
        (w,) = a.submit("", "", [spec()], T0).workloads
        lease_a.release()  # gives the lease up, as a stopping leader does
        term_b = lease_b.try_acquire()
        assert term_b is not None and term_b > term_a
        with pytest.raises(NotLeaderError):
            a.commit_cycle(_placing(a, w.id), term_a)
        assert b.get(w.id).state == WorkloadState.PENDING  # nothing of it landed
        outcome = b.commit_cycle(_placing(b, w.id), term_b)
        assert [p.id for p in outcome.placed] == [w.id]
        lease_b.release()
    finally:
        a.close()
        b.close()


@pytest.mark.integration
def test_every_servers_events_reach_every_subscriber_in_commit_order_when_two_share_a_database(
    postgres_url: str,
) -> None:
    a, b = _sql(postgres_url), _sql(postgres_url)
    try:
        with a.subscribe() as sub_a, b.subscribe() as sub_b:
            for i in range(20):
                (a if i % 2 else b).submit("", "", [spec(), spec()], T0)
            seen = {}
            for name, sub in (("a", sub_a), ("b", sub_b)):
                got = []
                while len(got) < 40:
                    ev = sub.get(timeout=5)
                    assert ev is not None, f"{name} saw only {len(got)} events"
                    got.append(ev.sequence)
                seen[name] = got
        assert seen["a"] == seen["b"] == list(range(seen["a"][0], seen["a"][0] + 40))
    finally:
        a.close()
        b.close()


def test_a_second_server_on_the_same_sqlite_file_is_refused_with_a_clear_error(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/valley.db"
    first, second = _sql(url), _sql(url)
    try:
        assert first.leader_lease("first").try_acquire() == 0
        with pytest.raises(StoreError, match="SQLite serves one server process"):
            second.leader_lease("second").try_acquire()
        first.close()  # gives the file up
        assert second.leader_lease("second").try_acquire() == 0
    finally:
        first.close()
        second.close()
