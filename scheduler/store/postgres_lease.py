"""The leader's lease on PostgreSQL: a session-level advisory lock on a connection of its own.

The lock lives as long as that session: a leader that dies (kill -9, a lost network) loses it
as soon as the server sees the connection go, and another server's next ``try_acquire`` takes
it. Taking it begins a new term in the ``leadership`` row, which the leader's placement commits
name (``cycle.check_term``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg

log = logging.getLogger(__name__)

# pg_try_advisory_lock key: "VALLEY" in ASCII plus one (the migration lock is "VALLEY")
LEADER_LOCK = 86657676699
CONNECT_TIMEOUT_S = 3


class AdvisoryLease:
    """``Lease`` (``leadership``) held by ``holder`` (a name for the ``leadership`` row)."""

    def __init__(self, dsn: str, holder: str) -> None:
        self._dsn = dsn
        self._holder = holder
        self._conn: psycopg.Connection[Any] | None = None
        self._held = False

    def try_acquire(self) -> int | None:
        try:
            if self._conn is None or self._conn.closed:
                # keepalives: a leader cut off from the database notices within seconds
                self._conn = psycopg.connect(
                    self._dsn,
                    autocommit=True,
                    connect_timeout=CONNECT_TIMEOUT_S,
                    keepalives=1,
                    keepalives_idle=5,
                    keepalives_interval=2,
                    keepalives_count=2,
                )
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,)).fetchone()
            if not row or not row[0]:
                return None
            self._held = True
            # waits for a deposed leader's commit in progress (it holds the row), then ends
            # its term
            row = self._conn.execute(
                "UPDATE leadership SET term = term + 1, holder = %s, since = %s WHERE id = 1 "
                "RETURNING term",
                (self._holder, time.time()),
            ).fetchone()
            assert row is not None
            return int(row[0])
        except psycopg.Error as e:
            log.debug("leader lease not taken: %s", e)
            self.release()
            return None

    def held(self) -> bool:
        if not self._held or self._conn is None:
            return False
        try:
            self._conn.execute("SELECT 1")
            return True
        except psycopg.Error as e:
            log.warning("leader lease lost: %s", e)
            self.release()
            return False

    def release(self) -> None:
        """Unlock (when the connection still works) and close the lease's connection; the
        server would free the lock with the session too, but only once it has seen the session
        end, and another server trying just after the close could still find it taken."""
        held, self._held = self._held, False
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if held and not conn.closed and not conn.broken:
                conn.execute("SELECT pg_advisory_unlock(%s)", (LEADER_LOCK,))
        except psycopg.Error:
            log.debug("unlocking the leader lease failed", exc_info=True)
        finally:
            try:
                conn.close()
            except psycopg.Error:
                log.debug("closing the lease connection failed", exc_info=True)
