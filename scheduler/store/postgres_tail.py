"""Every server's events for this server's watchers: a thread that follows the ``events`` table.

A transaction that writes events sends a NOTIFY on ``CHANNEL`` (delivered when it commits); the
tail LISTENs on a connection of its own and, when woken (or every ``POLL_S`` at the latest, in
case a notification was lost with a connection), reads the events after the last one it
published, in sequence order, and publishes them to the hub. The table is the truth and the
notification only a wake-up: sequence order is commit order and has no gaps
(``transactions``), so reading ``seq > last`` never skips an event that commits later.

An event carries the workload as the store has it when the tail reads it, in the event's state
(a creation event shows a PENDING workload without placements even if it was placed since).
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

import psycopg

from scheduler.domain import WorkloadState
from scheduler.store.base import WorkloadEvent
from scheduler.store.codec import instant
from scheduler.store.connection import Row
from scheduler.store.events import EventHub
from scheduler.store.rows import changed, load

log = logging.getLogger(__name__)

CHANNEL = "valley_events"
POLL_S = 0.5
RECONNECT_S = 0.5
PAGE = 5000  # events read at once


class _Conn:
    """The few ``Conn`` calls ``rows.load`` makes, on a plain autocommit connection."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def query(self, sql: str, params: Any = ()) -> list[Row]:
        with self._conn.cursor() as cur:
            cur.execute(sql.replace("?", "%s"), tuple(params))
            return list(cur.fetchall())


class EventTail:
    """Publishes the events after sequence number ``last`` to ``hub`` as they commit."""

    def __init__(self, dsn: str, hub: EventHub, last: int) -> None:
        self._dsn = dsn
        self._hub = hub
        self.last = last
        self._stop = threading.Event()
        self._conn: psycopg.Connection[Any] | None = None
        self._thread = threading.Thread(target=self._run, name="valley-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not self._stop.is_set():
                        while self._read(conn):
                            pass
                        # wait for a commit's notification; several are read as one
                        for _ in conn.notifies(timeout=POLL_S, stop_after=1):
                            pass
            except psycopg.Error as e:
                if not self._stop.is_set():
                    log.warning("event tail: %s; reconnecting", e)
                    self._stop.wait(RECONNECT_S)

    def _read(self, conn: psycopg.Connection[Any]) -> bool:
        """Publish the next page of events; True if the page was full (read on)."""
        rows = conn.execute(
            "SELECT seq, workload_id, state, previous_state, time FROM events "
            "WHERE seq > %s ORDER BY seq LIMIT %s",
            (self.last, PAGE),
        ).fetchall()
        if not rows:
            return False
        found = load(_Conn(conn), list({r[1] for r in rows}))  # type: ignore[arg-type]
        events = []
        for seq, wid, state, previous, t in rows:
            w = found.get(wid)
            if w is None:
                continue
            s = WorkloadState(int(state))
            if s != w.state:
                w = changed(w, state=s)
                if s == WorkloadState.PENDING:  # created: not placed yet, nor tried
                    w = changed(w, placements=(), reason="", placed_at=None)
            when = instant(t) or datetime.now(UTC)
            events.append(WorkloadEvent(int(seq), w, WorkloadState(int(previous)), when))
        self._hub.publish(events)
        self.last = int(rows[-1][0])
        return len(rows) == PAGE
