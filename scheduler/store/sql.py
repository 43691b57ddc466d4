"""The store logic both SQL implementations share; each supplies connections and a dialect.

Writes are serialised by one in-process lock (SQLite allows one writer anyway) and run in one
transaction each. Events get their sequence numbers under that lock and are published after the
commit, still under the lock, so watchers see them in commit order.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from scheduler.domain import (
    Cost,
    ReplicaPlacement,
    ValidationError,
    Workload,
    WorkloadSpec,
    WorkloadState,
)
from scheduler.store.base import (
    CycleCommit,
    CycleOutcome,
    NotFoundError,
    Page,
    PreconditionError,
    StateChange,
    StateCounts,
    StoreError,
    Submitted,
    WorkloadEvent,
)
from scheduler.store.codec import (
    epoch,
    gpus_from_text,
    gpus_to_text,
    instant,
    spec_from_json,
    spec_to_json,
)
from scheduler.store.connection import Conn, Dialect, Row
from scheduler.store.events import EventHub, Subscription

log = logging.getLogger(__name__)

IN_CHUNK = 500  # ids per IN (...) list

_COLUMNS = (
    "ord, id, state, spec, reason, created_at, placed_at, "
    "energy_cny_per_hour, carbon_kg_per_hour, power_watts"
)
_PLACEMENT_COLUMNS = "workload_id, replica, site, node, latency_ms, gpu_indices, start_time"
# states as stored, for comparisons on hot paths (an IntEnum compares several times slower)
_PENDING = int(WorkloadState.PENDING)
_PLACED = int(WorkloadState.PLACED)


def _changed(w: Workload, **changes: Any) -> Workload:
    """``dataclasses.replace`` for the hot paths: a few times faster on slotted dataclasses."""
    return Workload(
        id=w.id,
        spec=w.spec,
        state=changes.get("state", w.state),
        placements=changes.get("placements", w.placements),
        reason=changes.get("reason", w.reason),
        created_at=w.created_at,
        placed_at=changes.get("placed_at", w.placed_at),
        cost=changes.get("cost", w.cost),
    )


def new_workload_ids(n: int) -> list[str]:
    """``n`` new ids: ``w-``, the milliseconds since the epoch (11 hex digits), then 80 random
    bits (20 hex digits, from one call to the OS for all ``n``). Ids made later sort later, so
    the database inserts them at the end of its id indexes: random ids would each land on
    another index page, and every commit would write back a page per workload."""
    prefix = f"w-{time.time_ns() // 1_000_000:011x}"
    digits = os.urandom(10 * n).hex()
    return [prefix + digits[i : i + 20] for i in range(0, 20 * n, 20)]


class _Tx:
    """One write transaction: its connection plus the events to publish after commit."""

    def __init__(self, conn: Conn, store: SqlStore) -> None:
        self.conn = conn
        self._store = store
        self.events: list[WorkloadEvent] = []
        self._rows: list[tuple[Any, ...]] = []
        self._time: datetime | None = None  # the events of one write mostly share one time
        self._epoch: float | None = None

    def event(self, w: Workload, previous: WorkloadState, now: datetime) -> None:
        seq = self._store._seq + 1
        self._store._seq = seq
        self.events.append(WorkloadEvent(seq, w, previous, now))
        if now is not self._time:
            self._time, self._epoch = now, epoch(now)
        self._rows.append((seq, w.id, w.spec.tenant, int(w.state), int(previous), self._epoch))

    def write_events(self) -> None:
        if self._rows:
            self.conn.executemany(
                "INSERT INTO events (seq, workload_id, tenant, state, previous_state, time) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                self._rows,
            )


class _Submission:
    """One ``submit`` call waiting for the group commit that writes it."""

    __slots__ = (
        "error",
        "finished",
        "now",
        "prepared",
        "request_hash",
        "request_id",
        "result",
        "wake",
    )

    def __init__(
        self,
        request_id: str,
        request_hash: str,
        now: datetime,
        prepared: list[tuple[Workload, tuple[Any, ...]]],
    ) -> None:
        self.request_id = request_id
        self.request_hash = request_hash
        self.now = now
        self.prepared = prepared  # the new workloads and their rows, built before any lock
        self.wake = threading.Event()  # finished, or our turn to write the queue
        self.finished = False
        self.result: Submitted | None = None
        self.error: BaseException | None = None


def _prepare(
    specs: Sequence[WorkloadSpec], now: datetime
) -> list[tuple[Workload, tuple[Any, ...]]]:
    """New PENDING workloads for ``specs`` with their ``workloads`` rows (ids, spec JSON)."""
    pending = WorkloadState.PENDING
    t = epoch(now)
    out = []
    for wid, s in zip(new_workload_ids(len(specs)), specs, strict=True):
        out.append(
            (Workload(wid, s, pending, (), "", now), (wid, s.tenant, _PENDING, spec_to_json(s), t))
        )
    return out


def _shared_error(e: BaseException) -> BaseException:
    """The error of a group commit as each of the other submissions in it raises it."""
    if isinstance(e, StoreError):
        return StoreError(str(e))
    return StoreError(f"the commit of this submission failed: {type(e).__name__}: {e}")


class SqlStore:
    """A ``Store`` over any SQL database that a ``Conn`` adapts."""

    def __init__(
        self,
        url: str,
        writer: Conn,
        reader: Callable[[], Conn],
        dialect: Dialect,
        release_reader: Callable[[Conn], None] | None = None,
    ) -> None:
        self.url = url
        self._writer = writer
        self._reader = reader
        self._release_reader = release_reader
        self._dialect = dialect
        self._write_lock = threading.RLock()
        # group commit of submissions (see submit)
        self._group = threading.Lock()
        self._queue: list[_Submission] = []
        self._leading = False
        self._hub = EventHub()
        self._closed = False
        rows = writer.query("SELECT COALESCE(MAX(seq), 0) FROM events")
        self._seq = int(rows[0][0])

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def _write(self) -> Iterator[_Tx]:
        with self._write_lock:
            if self._closed:
                raise StoreError("store is closed")
            tx = _Tx(self._writer, self)
            seq_before = self._seq
            try:
                self._writer.begin_write()
                yield tx
                tx.write_events()
                self._writer.commit()
            except BaseException as e:
                self._seq = seq_before
                try:
                    self._writer.rollback()
                except self._dialect.errors:
                    log.exception("rollback failed")
                if isinstance(e, self._dialect.errors):
                    raise StoreError(f"{self._dialect.name}: {e}") from e
                raise
            self._hub.publish(tx.events)

    @contextmanager
    def _read(self) -> Iterator[Conn]:
        if self._closed:
            raise StoreError("store is closed")
        conn = self._reader()
        try:
            conn.begin_read()
            yield conn
            conn.commit()
        except BaseException as e:
            try:
                conn.rollback()
            except self._dialect.errors:
                log.exception("rollback failed")
            if isinstance(e, self._dialect.errors):
                raise StoreError(f"{self._dialect.name}: {e}") from e
            raise
        finally:
            if self._release_reader is not None:
                self._release_reader(conn)

    @staticmethod
    def _in(ids: Sequence[str]) -> Iterator[tuple[str, list[str]]]:
        for i in range(0, len(ids), IN_CHUNK):
            chunk = list(ids[i : i + IN_CHUNK])
            yield ", ".join("?" * len(chunk)), chunk

    def _workloads(self, conn: Conn, rows: Sequence[Row]) -> list[Workload]:
        """Workloads of ``rows`` (in ``_COLUMNS`` order) with their placements."""
        placed_ids = [r[1] for r in rows if r[6] is not None]
        reps: dict[str, list[ReplicaPlacement]] = {}
        for marks, chunk in self._in(placed_ids):
            for p in conn.query(
                f"SELECT {_PLACEMENT_COLUMNS} FROM placements WHERE workload_id IN ({marks}) "
                "ORDER BY workload_id, replica",
                chunk,
            ):
                reps.setdefault(p[0], []).append(
                    ReplicaPlacement(
                        replica=int(p[1]),
                        site=p[2],
                        node=p[3],
                        latency_ms=float(p[4]),
                        gpu_indices=gpus_from_text(p[5]),
                        start_time=instant(p[6]),
                    )
                )
        return [
            Workload(
                id=r[1],
                spec=spec_from_json(r[3]),
                state=WorkloadState(int(r[2])),
                placements=tuple(reps.get(r[1], ())),
                reason=r[4],
                created_at=instant(r[5]),
                placed_at=instant(r[6]),
                cost=Cost(float(r[7]), float(r[8]), float(r[9])),
            )
            for r in rows
        ]

    def _load(self, conn: Conn, ids: Sequence[str], lock: bool = False) -> dict[str, Workload]:
        out: dict[str, Workload] = {}
        suffix = self._dialect.for_update if lock else ""
        for marks, chunk in self._in(ids):
            rows = conn.query(
                f"SELECT {_COLUMNS} FROM workloads WHERE id IN ({marks}){suffix}", chunk
            )
            out.update((w.id, w) for w in self._workloads(conn, rows))
        return out

    def _states(self, conn: Conn, ids: Sequence[str]) -> dict[str, int]:
        """State (as its integer) of each of ``ids`` that exists, locked for this write."""
        out: dict[str, int] = {}
        for marks, chunk in self._in(ids):
            out.update(
                conn.query(
                    f"SELECT id, state FROM workloads WHERE id IN ({marks})"
                    f"{self._dialect.for_update}",
                    chunk,
                )
            )
        return out

    # ------------------------------------------------------------------ the Store protocol

    def submit(
        self, request_id: str, request_hash: str, specs: Sequence[WorkloadSpec], now: datetime
    ) -> Submitted:
        # Group commit: submissions that arrive while another one is being written wait, and the
        # first of them then writes them all in one transaction (one fsync). Each call returns
        # only after the commit that holds its rows, or raises what that commit raised.
        job = _Submission(request_id, request_hash, now, _prepare(specs, now))
        with self._group:
            self._queue.append(job)
            lead = not self._leading
            self._leading = True
        if not lead:
            job.wake.wait()
        if not job.finished:  # our turn to write: everything queued so far
            with self._group:
                batch, self._queue = self._queue, []
            try:
                self._write_submissions(batch)
            finally:
                with self._group:
                    if self._queue:
                        nxt = self._queue[0]  # written by the next one, with what came meanwhile
                        nxt.wake.set()
                    else:
                        self._leading = False
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def _write_submissions(self, batch: list[_Submission]) -> None:
        """One transaction for the submissions of ``batch``, in order; sets each one's result
        or error and wakes the waiting ones (all but the caller's own)."""
        try:
            with self._write() as tx:
                results = self._insert_submissions(tx, batch)
            for job, result in zip(batch, results, strict=True):
                if isinstance(result, ValidationError):
                    job.error = result
                else:
                    job.result = result
        except BaseException as e:
            for job in batch:
                job.error = e if job is batch[0] else _shared_error(e)
            raise
        finally:
            for job in batch:
                job.finished = True
                job.wake.set()

    def _insert_submissions(
        self, tx: _Tx, batch: Sequence[_Submission]
    ) -> list[Submitted | ValidationError]:
        results: list[Submitted | ValidationError] = []
        rows: list[tuple[Any, ...]] = []
        request_rows: list[tuple[Any, ...]] = []
        # request_ids written by this transaction: (hash, workloads)
        written: dict[str, tuple[str, tuple[Workload, ...]]] = {}
        event = tx.event
        for job in batch:
            if job.request_id:
                replay = self._replay(tx, job, written)
                if replay is not None:
                    results.append(replay)
                    continue
            created = tuple(w for w, _ in job.prepared)
            rows.extend(row for _, row in job.prepared)
            for w in created:
                event(w, WorkloadState.UNSPECIFIED, job.now)
            if job.request_id:
                written[job.request_id] = (job.request_hash, created)
                request_rows.append(
                    (
                        job.request_id,
                        job.request_hash,
                        json.dumps([w.id for w in created]),
                        epoch(job.now),
                    )
                )
            results.append(Submitted(created, created=True))
        if rows:
            tx.conn.executemany(
                "INSERT INTO workloads (id, tenant, state, spec, reason, reason_code, created_at) "
                "VALUES (?, ?, ?, ?, '', '', ?)",
                rows,
            )
        if request_rows:
            tx.conn.executemany(
                "INSERT INTO requests (request_id, request_hash, workload_ids, created_at) "
                "VALUES (?, ?, ?, ?)",
                request_rows,
            )
        return results

    def _replay(
        self,
        tx: _Tx,
        job: _Submission,
        written: dict[str, tuple[str, tuple[Workload, ...]]],
    ) -> Submitted | ValidationError | None:
        """The answer to a known request_id (a replay, or the error of a reuse), or None."""
        if job.request_id in written:
            known_hash, workloads = written[job.request_id]
        else:
            known = tx.conn.query(
                "SELECT request_hash, workload_ids FROM requests WHERE request_id = ?"
                + self._dialect.for_update,
                (job.request_id,),
            )
            if not known:
                return None
            known_hash = known[0][0]
            ids = json.loads(known[0][1])
            found = self._load(tx.conn, ids) if known_hash == job.request_hash else {}
            workloads = tuple(found[i] for i in ids if i in found)
        if known_hash != job.request_hash:
            return ValidationError(
                "request_id", f"{job.request_id!r} was already used for a different request"
            )
        return Submitted(workloads, created=False)

    def get(self, workload_id: str) -> Workload:
        with self._read() as conn:
            found = self._load(conn, [workload_id])
        if workload_id not in found:
            raise NotFoundError(workload_id)
        return found[workload_id]

    def list_workloads(
        self, tenant: str, states: Sequence[WorkloadState], after: int, limit: int
    ) -> Page:
        where = ["ord > ?"]
        params: list[Any] = [after]
        if tenant:
            where.append("tenant = ?")
            params.append(tenant)
        if states:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            params.extend(int(s) for s in states)
        params.append(limit + 1)
        with self._read() as conn:
            sql = f"SELECT {_COLUMNS} FROM workloads WHERE {' AND '.join(where)}"
            rows = conn.query(sql + " ORDER BY ord LIMIT ?", params)
            more = len(rows) > limit
            rows = rows[:limit]
            workloads = self._workloads(conn, rows)
        return Page(tuple(workloads), int(rows[-1][0]) if more and rows else None)

    def cancel(self, workload_id: str, now: datetime) -> StateChange:
        with self._write() as tx:
            found = self._load(tx.conn, [workload_id], lock=True)
            if workload_id not in found:
                raise NotFoundError(workload_id)
            w = found[workload_id]
            if w.state == WorkloadState.CANCELLED:
                return StateChange(w, w.state, changed=False)
            if w.state in (WorkloadState.COMPLETED, WorkloadState.UNSCHEDULABLE):
                raise PreconditionError(
                    f"workload {workload_id!r} is {w.state.name}; only PENDING or PLACED "
                    "workloads can be cancelled"
                )
            tx.conn.execute(
                "UPDATE workloads SET state = ?, finished_at = ? WHERE id = ?",
                (int(WorkloadState.CANCELLED), epoch(now), workload_id),
            )
            after = _changed(w, state=WorkloadState.CANCELLED)
            tx.event(after, w.state, now)
        return StateChange(after, w.state)

    def commit_cycle(self, cycle: CycleCommit) -> CycleOutcome:
        ids = list(cycle.workloads)
        if not ids:
            return CycleOutcome()
        now = cycle.now
        # Everything the cycle writes is built before taking the write lock, which submissions
        # wait for; under it, only the check that each workload is still PENDING, the writes and
        # the events. One entry per workload: (its state after, its row update or None, its
        # placement rows, whether the change is an event).
        entries = self._cycle_entries(cycle, now)
        with self._write() as tx:
            states = self._states(tx.conn, ids)
            skipped = {e[0].id for e in entries if states.get(e[0].id) != _PENDING}
            if skipped:  # cancelled while the cycle solved: left as they are
                entries = [e for e in entries if e[0].id not in skipped]
            updates = [e[1] for e in entries if e[1] is not None]
            if updates:
                tx.conn.executemany(
                    "UPDATE workloads SET state = ?, reason = ?, reason_code = ?, placed_at = ?, "
                    "energy_cny_per_hour = ?, carbon_kg_per_hour = ?, power_watts = ? "
                    "WHERE id = ?",
                    updates,
                )
            placement_rows = [row for e in entries for row in e[2]]
            if placement_rows:
                tx.conn.executemany(
                    f"INSERT INTO placements ({_PLACEMENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (workload_id, replica) DO UPDATE SET site = excluded.site, "
                    "node = excluded.node, latency_ms = excluded.latency_ms, "
                    "gpu_indices = excluded.gpu_indices, start_time = excluded.start_time",
                    placement_rows,
                )
            event = tx.event
            for w, _, _, changed in entries:
                if changed:
                    event(w, WorkloadState.PENDING, now)
        by_state: dict[WorkloadState, list[Workload]] = {
            WorkloadState.PLACED: [],
            WorkloadState.UNSCHEDULABLE: [],
            WorkloadState.PENDING: [],
        }
        for w, _, _, _ in entries:
            by_state[w.state].append(w)
        return CycleOutcome(
            tuple(by_state[WorkloadState.PLACED]),
            tuple(by_state[WorkloadState.UNSCHEDULABLE]),
            tuple(by_state[WorkloadState.PENDING]),
            frozenset(skipped),
        )

    @staticmethod
    def _cycle_entries(
        cycle: CycleCommit, now: datetime
    ) -> list[tuple[Workload, tuple[Any, ...] | None, list[tuple[Any, ...]], bool]]:
        """The writes of a cycle, placed workloads first, then unschedulable, then pending."""
        t = epoch(now)
        source = cycle.workloads
        placed_state = WorkloadState.PLACED
        entries: list[tuple[Workload, tuple[Any, ...] | None, list[tuple[Any, ...]], bool]] = []
        for wid, (given, cost) in cycle.placed.items():
            reps = tuple(
                ReplicaPlacement(p.replica, p.site, p.node, p.latency_ms, p.gpu_indices, now)
                for p in given
            )
            src = source[wid]
            w = Workload(wid, src.spec, placed_state, reps, "", src.created_at, now, cost)
            update = (
                _PLACED,
                "",
                "",
                t,
                cost.energy_cny_per_hour,
                cost.carbon_kg_per_hour,
                cost.power_watts,
                wid,
            )
            rows = [
                (wid, p.replica, p.site, p.node, p.latency_ms, gpus_to_text(p.gpu_indices), t)
                for p in reps
            ]
            entries.append((w, update, rows, True))
        for wid, unfit in cycle.unschedulable.items():
            w = _changed(source[wid], state=WorkloadState.UNSCHEDULABLE, reason=unfit.message)
            update = (int(w.state), unfit.message, unfit.code, None, 0.0, 0.0, 0.0, wid)
            entries.append((w, update, [], True))
        for wid, unfit in cycle.pending.items():
            w = source[wid]
            if w.reason == unfit.message:
                entries.append((w, None, [], False))
                continue
            w = _changed(w, reason=unfit.message)
            update = (int(w.state), unfit.message, unfit.code, None, 0.0, 0.0, 0.0, wid)
            entries.append((w, update, [], False))
        return entries

    def complete(self, workloads: Sequence[Workload], now: datetime) -> tuple[StateChange, ...]:
        if not workloads:
            return ()
        out: list[StateChange] = []
        with self._write() as tx:
            states = self._states(tx.conn, [w.id for w in workloads])
            rows = []
            for w in workloads:
                if states.get(w.id) != _PLACED:
                    continue
                after = _changed(w, state=WorkloadState.COMPLETED)
                rows.append((int(after.state), epoch(now), w.id))
                tx.event(after, WorkloadState.PLACED, now)
                out.append(StateChange(after, WorkloadState.PLACED))
            if rows:
                tx.conn.executemany(
                    "UPDATE workloads SET state = ?, finished_at = ? WHERE id = ?", rows
                )
        return tuple(out)

    def active_workloads(self) -> tuple[Workload, ...]:
        with self._read() as conn:
            rows = conn.query(
                f"SELECT {_COLUMNS} FROM workloads WHERE state IN (?, ?) ORDER BY ord",
                (int(WorkloadState.PENDING), int(WorkloadState.PLACED)),
            )
            return tuple(self._workloads(conn, rows))

    def counts(self) -> StateCounts:
        by_state: dict[WorkloadState, int] = {}
        pending: dict[str, int] = {}
        unschedulable: dict[str, int] = {}
        with self._read() as conn:
            rows = conn.query(
                "SELECT state, reason_code, COUNT(*) FROM workloads GROUP BY state, reason_code"
            )
        for state, code, n in rows:
            s = WorkloadState(int(state))
            by_state[s] = by_state.get(s, 0) + int(n)
            if s == WorkloadState.PENDING and code:
                pending[code] = pending.get(code, 0) + int(n)
            elif s == WorkloadState.UNSCHEDULABLE and code:
                unschedulable[code] = unschedulable.get(code, 0) + int(n)
        return StateCounts(by_state, pending, unschedulable)

    def pending_reason_codes(self) -> dict[str, str]:
        with self._read() as conn:
            rows = conn.query(
                "SELECT id, reason_code FROM workloads WHERE state = ? AND reason_code <> ''",
                (int(WorkloadState.PENDING),),
            )
        return {r[0]: r[1] for r in rows}

    def subscribe(self) -> Subscription:
        return self._hub.subscribe()

    def close_watchers(self) -> None:
        """End every open subscription (a draining server lets its watch streams finish)."""
        self._hub.close()

    def close(self) -> None:
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            self._hub.close()
            self._close_connections()

    def _close_connections(self) -> None:
        self._writer.close()
