"""Transactions of the SQL store, and the events they commit.

Writes are serialised by one in-process lock (SQLite allows one writer anyway) and run in one
transaction each. Events get their sequence numbers from the database (the ``event_sequence``
row, updated just before the commit: its row lock orders the commits of every process that writes
events, so sequence order is commit order and a rolled-back transaction leaves no gap). A store
used by one process publishes them after the commit, still under the lock; a shared one leaves
that to its tail of the ``events`` table (``postgres_tail``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TypeVar

from scheduler.domain import Workload, WorkloadState
from scheduler.store.base import StoreError, WorkloadEvent
from scheduler.store.codec import epoch
from scheduler.store.connection import Conn, Dialect
from scheduler.store.events import EventHub

log = logging.getLogger(__name__)
T = TypeVar("T")


class Tx:
    """One write transaction: its connection plus the events it commits."""

    def __init__(self, conn: Conn, notify: str = "") -> None:
        self.conn = conn
        self._notify = notify
        self.events: list[WorkloadEvent] = []  # numbered by write_events
        self._changes: list[tuple[Workload, WorkloadState, datetime, float | None]] = []
        self._time: datetime | None = None  # the events of one write mostly share one time
        self._epoch: float | None = None

    def event(self, w: Workload, previous: WorkloadState, now: datetime) -> None:
        """Record that ``w`` changed from ``previous`` at ``now``: an event to number, write and
        publish when the transaction ends."""
        if now is not self._time:
            self._time, self._epoch = now, epoch(now)
        self._changes.append((w, previous, now, self._epoch))

    def write_events(self) -> None:
        """Number the recorded events (the database's next sequence numbers) and write them;
        the last statements before the commit, as the sequence row stays locked until then."""
        n = len(self._changes)
        if not n:
            return
        rows = self.conn.query(
            "UPDATE event_sequence SET last = last + ? WHERE id = 1 RETURNING last", (n,)
        )
        first = int(rows[0][0]) - n + 1
        out = []
        for seq, (w, previous, now, t) in enumerate(self._changes, first):
            self.events.append(WorkloadEvent(seq, w, previous, now))
            out.append((seq, w.id, w.spec.tenant, int(w.state), int(previous), t))
        self.conn.executemany(
            "INSERT INTO events (seq, workload_id, tenant, state, previous_state, time) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            out,
        )
        if self._notify:
            self.conn.execute(self._notify)


class Transactions:
    """Write transactions on the one ``writer`` connection (serialised; their events published
    to ``hub`` after each commit) and read transactions on a connection of ``reader``; driver
    errors of ``dialect`` come out as ``StoreError``."""

    def __init__(
        self,
        writer: Conn,
        reader: Callable[[], Conn],
        dialect: Dialect,
        release_reader: Callable[[Conn], None] | None,
    ) -> None:
        self._writer = writer
        self._reader = reader
        self._release_reader = release_reader
        self._dialect = dialect
        self.lock = threading.RLock()  # the write lock
        self.hub = EventHub()
        self.closed = False

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """One write transaction: committed with its events when the block ends, rolled back
        (and the sequence numbers it took with it) when it raises."""
        with self.lock:
            if self.closed:
                raise StoreError("store is closed")
            tx = Tx(self._writer, self._dialect.notify)
            try:
                self._writer.begin_write()
                yield tx
                tx.write_events()
                self._writer.commit()
            except BaseException as e:
                self._rollback(self._writer)
                self._raise_driver_error(e)
                raise
            if not self._dialect.shared:
                self.hub.publish(tx.events)

    @contextmanager
    def read(self) -> Iterator[Conn]:
        """One read transaction on this thread's read connection."""
        if self.closed:
            raise StoreError("store is closed")
        conn = self._reader()
        try:
            conn.begin_read()
            yield conn
            conn.commit()
        except BaseException as e:
            self._rollback(conn)
            self._raise_driver_error(e)
            raise
        finally:
            if self._release_reader is not None:
                self._release_reader(conn)

    def reading(self, fn: Callable[[Conn], T], attempts: int = 3) -> T:
        """``fn`` in one read transaction. A read can be repeated: when the connection broke
        under it (the dialect's ``transient`` errors), it is tried again after 0.1 s, then
        0.4 s (``attempts`` in all)."""
        for attempt in range(attempts):
            try:
                with self.read() as conn:
                    return fn(conn)
            except StoreError as e:
                transient = isinstance(e.__cause__, self._dialect.transient)
                if not transient or attempt + 1 >= attempts:
                    raise
                log.warning("read failed (%s); trying again", e)
                time.sleep(0.1 * 4**attempt)
        raise AssertionError("unreachable")

    def close(self, close_connections: Callable[[], None]) -> None:
        """Refuse further transactions, end every subscription and ``close_connections``
        (once; after the write in progress, if any)."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            self.hub.close()
            close_connections()

    def _rollback(self, conn: Conn) -> None:
        try:
            conn.rollback()
        except self._dialect.errors:
            log.exception("rollback failed")

    def _raise_driver_error(self, e: BaseException) -> None:
        if isinstance(e, self._dialect.errors):
            raise StoreError(f"{self._dialect.name}: {e}") from e
