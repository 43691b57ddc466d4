"""The store contract, run against SQLite and a real PostgreSQL server alike."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from scheduler.domain import (
    Cost,
    ReplicaPlacement,
    Resources,
    Topology,
    ValidationError,
    WorkloadKind,
    WorkloadSpec,
    WorkloadState,
)
from scheduler.store import (
    CycleCommit,
    NotFoundError,
    PreconditionError,
    Store,
    StoreError,
    Submitted,
    Unfit,
    open_store,
)

pytest_plugins = ["tests.pg"]

T0 = datetime(2025, 7, 1, 4, 0, tzinfo=UTC)
S = WorkloadState


def spec(tenant: str = "acme", name: str = "web", cpu: int = 1000, **kw: object) -> WorkloadSpec:
    return WorkloadSpec(tenant=tenant, name=name, resources=Resources(cpu, 1024), **kw)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/valley.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    yield s
    s.close()


def reopen(store: Store) -> Store:
    store.close()
    return open_store(store.url)


def place(store: Store, w_ids: list[str], node: str = "green/gpu-0000", gpus: tuple[int, ...] = ()):
    workloads = {w.id: w for w in (store.get(i) for i in w_ids)}
    placed = {
        wid: (
            tuple(
                ReplicaPlacement(r, "green", node, 1.0, gpus)
                for r in range(workloads[wid].spec.replica_count)
            ),
            Cost(0.5, 0.1, 120.0),
        )
        for wid in w_ids
    }
    return store.commit_cycle(CycleCommit(workloads, placed, {}, {}, T0 + timedelta(seconds=1)))


def test_submitted_workloads_come_back_with_every_field_after_a_reopen(store: Store) -> None:
    full = WorkloadSpec(
        tenant="acme",
        name="trainer",
        resources=Resources(8000, 65536, 0, 500),
        replicas=3,
        origin="city",
        max_latency_ms=4.5,
        priority=7,
        kind=WorkloadKind.BATCH,
        duration_s=60,
        deadline=T0 + timedelta(hours=2),
        allowed_sites=("green",),
        topology=Topology.SPREAD,
        min_sites=2,
        gpu_models=("A800",),
        labels={"team": "ml", "tier": "gold"},
    )
    sub = store.submit("r1", "h1", [full, spec()], T0)
    assert sub.created
    assert [w.state for w in sub.workloads] == [S.PENDING, S.PENDING]
    store = reopen(store)
    try:
        got = store.get(sub.workloads[0].id)
        assert got.spec == full
        assert got.created_at == T0
        assert got.reason == ""
        assert got.placements == ()
    finally:
        store.close()


def test_same_request_id_and_request_replays_the_first_call_and_creates_nothing(
    store: Store,
) -> None:
    first = store.submit("req-1", "hash-a", [spec(), spec(name="b")], T0)
    again = store.submit("req-1", "hash-a", [spec(), spec(name="b")], T0 + timedelta(seconds=5))
    assert not again.created
    assert [w.id for w in again.workloads] == [w.id for w in first.workloads]
    assert len(store.list_workloads("", [], 0, 100).workloads) == 2


def test_same_request_id_with_another_request_is_rejected_naming_request_id(
    store: Store,
) -> None:
    store.submit("req-1", "hash-a", [spec()], T0)
    with pytest.raises(ValidationError) as e:
        store.submit("req-1", "hash-b", [spec(cpu=2000)], T0)
    assert e.value.field == "request_id"
    assert len(store.list_workloads("", [], 0, 100).workloads) == 1


def test_a_request_id_of_another_tenant_is_a_new_request_when_tenants_differ(
    store: Store,
) -> None:
    first = store.submit("req-1", "hash-a", [spec(tenant="a")], T0)
    other = store.submit("req-1", "hash-b", [spec(tenant="b", cpu=2000)], T0)
    assert other.created
    # b replaying a's body under a's request_id gets its own workloads, never a's ids
    replay = store.submit("req-1", "hash-a", [spec(tenant="a")], T0, tenant="c")
    assert replay.created
    assert {w.id for w in replay.workloads}.isdisjoint(w.id for w in first.workloads)
    again = store.submit("req-1", "hash-a", [spec(tenant="a")], T0)
    assert not again.created
    assert [w.id for w in again.workloads] == [w.id for w in first.workloads]
    assert len(store.list_workloads("", [], 0, 100).workloads) == 3


def _version_1_database(url: str) -> list[str]:
    """A database at schema version 1 holding one request of tenant ``old`` (two workloads)
    and one without workloads; the workload ids."""
    from scheduler.store.codec import spec_to_json
    from scheduler.store.migrations import MIGRATIONS

    ids = ["w-old-0", "w-old-1"]
    v1 = MIGRATIONS[0]
    rows = [(i, "old", int(S.PENDING), spec_to_json(spec(tenant="old")), 1.0) for i in ids]
    requests = [("req-1", "hash-a", f'["{ids[0]}", "{ids[1]}"]', 1.0), ("req-0", "h", "[]", 1.0)]
    if url.startswith("sqlite"):
        import sqlite3

        conn: Any = sqlite3.connect(url.removeprefix("sqlite:///"))
        statements, mark = v1.sqlite, "?"
    else:
        import psycopg

        conn = psycopg.connect(url)
        statements, mark = v1.postgresql, "%s"
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for statement in statements:
        conn.execute(statement)
    conn.execute("INSERT INTO schema_version (version) VALUES (1)")
    cur = conn.cursor()
    cur.executemany(
        "INSERT INTO workloads (id, tenant, state, spec, created_at) VALUES "
        + ", ".join([mark] * 5).join("()"),
        rows,
    )
    cur.executemany(
        "INSERT INTO requests (request_id, request_hash, workload_ids, created_at) VALUES "
        + ", ".join([mark] * 4).join("()"),
        requests,
    )
    conn.commit()
    conn.close()
    return ids


def test_requests_recorded_before_version_2_stay_their_first_workloads_tenants(
    store_url: str,
) -> None:
    ids = _version_1_database(store_url)
    store = open_store(store_url)
    try:
        replay = store.submit("req-1", "hash-a", [spec(tenant="old")], T0)
        assert not replay.created
        assert [w.id for w in replay.workloads] == ids
        assert store.submit("req-1", "hash-a", [spec(tenant="new")], T0).created
        assert not store.submit("req-0", "h", [], T0, tenant="").created
    finally:
        store.close()


def test_workloads_stored_before_version_4_count_what_they_hold_toward_a_quota(
    store_url: str,
) -> None:
    _version_1_database(store_url)
    store = open_store(store_url)
    seen: dict[str, Resources] = {}

    def admit(held: Mapping[str, Resources]) -> Exception | None:
        seen.update(held)
        return None

    try:
        store.submit("", "", [spec(tenant="old")], T0, admit=admit)
    finally:
        store.close()
    assert seen == {"old": Resources(2000, 2048)}  # the two version-1 workloads


def test_a_submission_its_admission_refuses_leaves_the_tenants_request_id_unused(
    store: Store,
) -> None:
    refusal = ValueError("over quota")
    a = [spec(tenant="a")]
    with pytest.raises(ValueError, match="over quota"):
        store.submit("req-1", "hash-a", a, T0, tenant="a", admit=lambda _: refusal)
    assert store.list_workloads("", [], 0, 100).workloads == ()
    again = store.submit("req-1", "hash-b", a, T0, tenant="a", admit=lambda _: None)
    assert again.created and len(again.workloads) == 1


def test_an_empty_request_id_never_deduplicates(store: Store) -> None:
    store.submit("", "h", [spec()], T0)
    store.submit("", "h", [spec()], T0)
    assert len(store.list_workloads("", [], 0, 100).workloads) == 2


@contextmanager
def writes_held(url: str) -> Iterator[None]:
    """Another connection holds the database's write lock: the store's writes wait for it, so
    submissions made meanwhile queue up and commit together once it lets go."""
    if url.startswith("sqlite"):
        import sqlite3

        from scheduler.store.sqlite import sqlite_path

        lite = sqlite3.connect(sqlite_path(url), isolation_level=None)
        lite.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            lite.execute("ROLLBACK")
            lite.close()
        return
    import psycopg

    with psycopg.connect(url) as pg:
        pg.execute("LOCK TABLE workloads IN EXCLUSIVE MODE")
        try:
            yield
        finally:
            pg.rollback()


def submit_all(
    store: Store, calls: list[tuple[str, str, list[WorkloadSpec]]], url: str
) -> list[object]:
    """Run ``calls`` (request_id, hash, specs) at once from threads while writes are held;
    returns each call's ``Submitted`` or exception, in call order."""
    out: list[object] = [None] * len(calls)

    def run(i: int) -> None:
        request_id, digest, specs = calls[i]
        try:
            out[i] = store.submit(request_id, digest, specs, T0)
        except Exception as e:
            out[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    with writes_held(url):
        for t in threads:
            t.start()
        time.sleep(0.3)  # let them queue behind the held lock (correct either way)
    for t in threads:
        t.join(30)
        assert not t.is_alive(), "a submission never returned"
    return out


def test_concurrent_submissions_each_get_their_own_workloads_all_committed_in_order(
    store: Store, store_url: str
) -> None:
    calls = [("", "", [spec(name=f"c{i}-a"), spec(name=f"c{i}-b")]) for i in range(8)]
    with store.subscribe() as sub:
        results = submit_all(store, calls, store_url)
        events = []
        while (e := sub.get(timeout=0.5)) is not None:
            events.append(e)
    ids: list[str] = []
    for i, r in enumerate(results):
        assert isinstance(r, Submitted) and r.created
        assert [w.spec.name for w in r.workloads] == [f"c{i}-a", f"c{i}-b"]
        ids += [w.id for w in r.workloads]
    assert len(set(ids)) == 16
    store = reopen(store)  # committed: durable
    try:
        assert all(store.get(i).state == S.PENDING for i in ids)
    finally:
        store.close()
    assert sorted(e.workload.id for e in events) == sorted(ids)
    seqs = [e.sequence for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + 16))
    # each submission's workloads are created together, in request order
    for r in results:
        assert isinstance(r, Submitted)
        first = [e.workload.id for e in events].index(r.workloads[0].id)
        assert events[first + 1].workload.id == r.workloads[1].id


def test_a_request_id_submitted_concurrently_creates_once_and_a_different_request_is_refused(
    store: Store, store_url: str
) -> None:
    calls = [("req", "hash-a", [spec(name="a")])] * 4 + [("req", "hash-b", [spec(name="b")])] * 2
    results = submit_all(store, calls, store_url)
    created = [i for i, r in enumerate(results) if isinstance(r, Submitted) and r.created]
    assert len(created) == 1
    winner = calls[created[0]][1]
    first = results[created[0]]
    assert isinstance(first, Submitted)
    for (_, digest, _), r in zip(calls, results, strict=True):
        if digest == winner:
            assert isinstance(r, Submitted)
            assert [w.id for w in r.workloads] == [w.id for w in first.workloads]
        else:
            assert isinstance(r, ValidationError) and r.field == "request_id"
    assert len(store.list_workloads("", [], 0, 100).workloads) == 1


def test_unknown_id_is_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError):
        store.get("w-nope")
    with pytest.raises(NotFoundError):
        store.cancel("w-nope", T0)


def test_list_pages_in_submission_order_with_filters(store: Store) -> None:
    ids = []
    for i in range(7):
        sub = store.submit("", "", [spec(tenant="a" if i % 2 == 0 else "b", name=f"n{i}")], T0)
        ids.append(sub.workloads[0].id)
    store.cancel(ids[2], T0)
    seen: list[str] = []
    after = 0
    while True:
        page = store.list_workloads("", [], after, 3)
        seen += [w.id for w in page.workloads]
        if page.next_after is None:
            break
        after = page.next_after
    assert seen == ids
    a = store.list_workloads("a", [], 0, 100).workloads
    assert [w.spec.name for w in a] == ["n0", "n2", "n4", "n6"]
    pending_a = store.list_workloads("a", [S.PENDING], 0, 100).workloads
    assert [w.spec.name for w in pending_a] == ["n0", "n4", "n6"]
    exact = store.list_workloads("", [], 0, 7)
    assert exact.next_after is None


def test_cancel_rules(store: Store) -> None:
    a, b, c = store.submit("", "", [spec(), spec(), spec()], T0).workloads
    change = store.cancel(a.id, T0)
    assert (change.previous_state, change.workload.state, change.changed) == (
        S.PENDING,
        S.CANCELLED,
        True,
    )
    again = store.cancel(a.id, T0)
    assert (again.workload.state, again.changed) == (S.CANCELLED, False)
    store.commit_cycle(
        CycleCommit({b.id: b}, {}, {b.id: Unfit("slo", "RTT 4.0 ms > SLO 2.0 ms")}, {}, T0)
    )
    with pytest.raises(PreconditionError):
        store.cancel(b.id, T0)
    place(store, [c.id])
    store.complete([store.get(c.id)], T0)
    with pytest.raises(PreconditionError):
        store.cancel(c.id, T0)


def test_a_cycle_commits_placements_with_gpu_indices_and_they_survive_a_reopen(
    store: Store,
) -> None:
    w1, w2, w3 = store.submit("", "", [spec(replicas=2), spec(), spec()], T0).workloads
    out = store.commit_cycle(
        CycleCommit(
            {w.id: w for w in (w1, w2, w3)},
            {
                w1.id: (
                    (
                        ReplicaPlacement(0, "green", "green/gpu-0000", 4.0, (0, 1)),
                        ReplicaPlacement(1, "green", "green/gpu-0000", 4.0, (3,)),
                    ),
                    Cost(1.5, 0.3, 900.0),
                )
            },
            {w2.id: Unfit("slo", "no site meets the SLO")},
            {w3.id: Unfit("capacity", "does not fit now: cpu")},
            T0 + timedelta(seconds=2),
        )
    )
    assert [w.id for w in out.placed] == [w1.id]
    assert out.placed[0].placed_at == T0 + timedelta(seconds=2)
    assert [w.id for w in out.unschedulable] == [w2.id]
    assert [w.reason for w in out.pending] == ["does not fit now: cpu"]
    store = reopen(store)
    try:
        got = store.get(w1.id)
        assert got.state == S.PLACED
        assert [(p.replica, p.node, p.gpu_indices) for p in got.placements] == [
            (0, "green/gpu-0000", (0, 1)),
            (1, "green/gpu-0000", (3,)),
        ]
        assert got.cost == Cost(1.5, 0.3, 900.0)
        assert store.get(w2.id).state == S.UNSCHEDULABLE
        assert store.get(w2.id).reason == "no site meets the SLO"
        assert store.get(w3.id).reason == "does not fit now: cpu"
        active = store.active_workloads()
        assert [w.id for w in active] == [w1.id, w3.id]
        assert active[0].placements == got.placements
        counts = store.counts()
        assert counts.by_state == {S.PLACED: 1, S.UNSCHEDULABLE: 1, S.PENDING: 1}
        assert counts.pending_by_reason == {"capacity": 1}
        assert counts.unschedulable_by_reason == {"slo": 1}
    finally:
        store.close()


def test_a_cycle_skips_workloads_cancelled_while_it_solved(store: Store) -> None:
    w1, w2 = store.submit("", "", [spec(), spec()], T0).workloads
    store.cancel(w1.id, T0)
    out = place(store, [w1.id, w2.id])
    assert out.skipped == {w1.id}
    assert [w.id for w in out.placed] == [w2.id]
    assert store.get(w1.id).state == S.CANCELLED
    assert store.get(w1.id).placements == ()


def test_complete_moves_only_placed_workloads(store: Store) -> None:
    w1, w2 = store.submit("", "", [spec(), spec()], T0).workloads
    place(store, [w1.id])
    done = store.complete([store.get(w1.id), w2], T0 + timedelta(minutes=1))
    assert [(c.workload.id, c.workload.state) for c in done] == [(w1.id, S.COMPLETED)]
    assert store.get(w2.id).state == S.PENDING


def events_of(sub: Any, count: int) -> list[Any]:
    """The subscription's events: waiting for ``count`` of them (PostgreSQL's notifications
    come late on a loaded machine), then any more that follow at once."""
    events: list[Any] = []
    while len(events) < count and (e := sub.get(timeout=10)) is not None:
        events.append(e)
    while (e := sub.get(timeout=0.2)) is not None:
        events.append(e)
    return events


def test_events_arrive_in_commit_order_with_increasing_sequence(store: Store) -> None:
    with store.subscribe() as sub:
        w1, w2 = store.submit("", "", [spec(), spec()], T0).workloads
        place(store, [w1.id])
        store.cancel(w2.id, T0)
        store.cancel(w2.id, T0)  # no change, no event
        events = events_of(sub, 4)
    assert [(e.workload.id, e.previous_state, e.workload.state) for e in events] == [
        (w1.id, S.UNSPECIFIED, S.PENDING),
        (w2.id, S.UNSPECIFIED, S.PENDING),
        (w1.id, S.PENDING, S.PLACED),
        (w2.id, S.PENDING, S.CANCELLED),
    ]
    seqs = [e.sequence for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_sequence_keeps_increasing_across_a_reopen(store: Store) -> None:
    store.submit("", "", [spec()], T0)
    store = reopen(store)
    try:
        with store.subscribe() as sub:
            store.submit("", "", [spec()], T0)
            e = sub.get(timeout=1)
        assert e is not None and e.sequence == 2
    finally:
        store.close()


def test_a_failed_write_stores_nothing_and_publishes_nothing(store: Store) -> None:
    store.submit("req", "h", [spec()], T0)
    with store.subscribe() as sub:
        with pytest.raises(ValidationError):
            store.submit("req", "other", [spec()], T0)
        assert sub.get(timeout=0.2) is None


def test_an_unknown_store_url_is_rejected_with_the_supported_forms() -> None:
    with pytest.raises(StoreError, match=r"sqlite:///relative\.db"):
        open_store("mysql://x/y")


def test_sqlite_store_writes_in_wal_mode_with_synchronous_full(tmp_path: Path) -> None:
    from scheduler.store.sqlite import SqliteStore

    s = SqliteStore(f"sqlite:///{tmp_path}/v.db")
    try:
        w = s._writer
        assert w.pragma("journal_mode") == "wal"  # type: ignore[attr-defined]
        assert w.pragma("synchronous") == 2  # type: ignore[attr-defined]  # 2 = FULL
    finally:
        s.close()


def test_sqlite_urls_relative_and_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scheduler.store.sqlite import sqlite_path

    assert sqlite_path("sqlite:///data/valley.db") == "data/valley.db"
    assert sqlite_path("sqlite:////var/lib/valley.db") == "/var/lib/valley.db"
    monkeypatch.chdir(tmp_path)
    s = open_store("sqlite:///sub/dir/v.db")
    s.close()
    assert (tmp_path / "sub" / "dir" / "v.db").exists()


def test_a_database_from_a_newer_valley_is_refused(tmp_path: Path) -> None:
    import sqlite3

    url = f"sqlite:///{tmp_path}/v.db"
    open_store(url).close()
    conn = sqlite3.connect(tmp_path / "v.db")
    conn.execute("INSERT INTO schema_version (version) VALUES (999)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        open_store(url)


def _race(stores: list[Store], tenant: str) -> list[str]:
    """Each store submits 2,000 millicores of ``tenant`` at once, with a slow quota check of
    3,000 (the other server's transaction runs meanwhile); what each got."""

    def check(held: Mapping[str, Resources]) -> Exception | None:
        time.sleep(0.05)
        return ValueError("over quota") if held[tenant].cpu_millis + 2000 > 3000 else None

    start = threading.Barrier(len(stores))
    outcomes: list[str] = []

    def submit(s: Store) -> None:
        start.wait()
        try:
            s.submit("", "", [spec(tenant=tenant, cpu=2000)], T0, admit=check)
            outcomes.append("accepted")
        except ValueError:
            outcomes.append("refused")

    threads = [threading.Thread(target=submit, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return sorted(outcomes)


def test_two_servers_on_one_database_never_both_admit_a_tenants_last_room(
    store_url: str,
) -> None:
    stores = [open_store(store_url), open_store(store_url)]
    try:
        for round_ in range(4):
            assert _race(stores, f"t{round_}") == ["accepted", "refused"], round_
    finally:
        for s in stores:
            s.close()
