"""Transactions of the SQL store, and the events they commit.

Writes are serialised by one in-process lock (SQLite allows one writer anyway) and run in one
transaction each. Events get their sequence numbers under that lock and are published after the
commit, still under the lock, so watchers see them in commit order.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from scheduler.domain import Workload, WorkloadState
from scheduler.store.base import StoreError, WorkloadEvent
from scheduler.store.codec import epoch
from scheduler.store.connection import Conn, Dialect
from scheduler.store.events import EventHub

log = logging.getLogger(__name__)


class Tx:
    """One write transaction: its connection plus the events to publish after commit."""

    def __init__(self, conn: Conn, owner: Transactions) -> None:
        self.conn = conn
        self._owner = owner
        self.events: list[WorkloadEvent] = []
        self._rows: list[tuple[Any, ...]] = []
        self._time: datetime | None = None  # the events of one write mostly share one time
        self._epoch: float | None = None

    def event(self, w: Workload, previous: WorkloadState, now: datetime) -> None:
        """Record that ``w`` changed from ``previous`` at ``now``: the next sequence number, an
        event to publish and an ``events`` row to write."""
        seq = self._owner.seq + 1
        self._owner.seq = seq
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
        rows = writer.query("SELECT COALESCE(MAX(seq), 0) FROM events")
        self.seq = int(rows[0][0])  # of the last event written

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """One write transaction: committed with its events when the block ends, rolled back
        (and the sequence numbers it took given back) when it raises."""
        with self.lock:
            if self.closed:
                raise StoreError("store is closed")
            tx = Tx(self._writer, self)
            seq_before = self.seq
            try:
                self._writer.begin_write()
                yield tx
                tx.write_events()
                self._writer.commit()
            except BaseException as e:
                self.seq = seq_before
                self._rollback(self._writer)
                self._raise_driver_error(e)
                raise
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
