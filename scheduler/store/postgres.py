"""The shared store: PostgreSQL through psycopg 3. Same schema and logic as SQLite; a commit is
durable when it returns (synchronous_commit on, the server default).

It survives its database: every transaction borrows a connection from a pool (psycopg-pool)
that checks it before handing it out and replaces broken ones, so after a database restart the
next transaction simply gets a new connection; reads that a broken connection failed are tried
again (``Transactions.reading``). Several servers may share the database: events reach every
server's watchers through the ``events`` table (``postgres_tail``), and one server at a time
runs the loop (``postgres_lease``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from scheduler.store.base import StoreError
from scheduler.store.events import Subscription
from scheduler.store.leadership import Lease
from scheduler.store.postgres_lease import AdvisoryLease
from scheduler.store.postgres_tail import CHANNEL, EventTail
from scheduler.store.queries import last_sequence
from scheduler.store.sql import Dialect, Row, SqlStore, migrate

DIALECT = Dialect(
    "postgresql",
    for_update=" FOR UPDATE",
    errors=(psycopg.Error,),
    transient=(psycopg.OperationalError,),
    shared=True,
    notify=f"SELECT pg_notify('{CHANNEL}', '')",
    # (key "VALLEY" cut to 32 bits, the tenant's hash): held to the end of the transaction
    tenant_lock="SELECT pg_advisory_xact_lock(86657676, hashtext(?))",
)
# pg_advisory_xact_lock key: "VALLEY" in ASCII, so that servers migrating at once take turns
_MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(86657676698)"
CONNECT_TIMEOUT_S = 5
POOL_WAIT_S = 3.0  # how long a transaction waits for a connection before it fails
POOL_SIZE = 12
_TS = psycopg.pq.TransactionStatus


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


class _PooledConn:
    """A ``Conn`` that borrows a pool connection for each transaction and gives it back at the
    commit or rollback (the pool throws a broken one away)."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._conn: psycopg.Connection[Any] | None = None

    def _current(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            raise StoreError("no transaction in progress")
        return self._conn

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._current().cursor() as cur:
            cur.execute(_pg(sql), tuple(params))
            return list(cur.fetchall())

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self._current().cursor() as cur:
            cur.execute(_pg(sql), tuple(params))
            return cur.rowcount

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._current().cursor() as cur:
            cur.executemany(_pg(sql), [tuple(r) for r in rows])

    def _begin(self, statement: str) -> None:
        try:
            self._conn = self._pool.getconn(timeout=POOL_WAIT_S)
        except PoolTimeout:
            # not a transient error: the wait for a connection was the retry
            raise StoreError(
                f"postgresql: no database connection within {POOL_WAIT_S:.0f} s"
            ) from None
        self._conn.execute(statement)

    def begin_write(self) -> None:
        self._begin("BEGIN")

    def begin_read(self) -> None:
        # one snapshot for the statements of a read (workloads, then their placements)
        self._begin("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def commit(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if conn.info.transaction_status != _TS.IDLE:
                conn.execute("COMMIT")
        finally:
            self._pool.putconn(conn)

    def rollback(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            status = conn.info.transaction_status
            if status not in (
                psycopg.pq.TransactionStatus.IDLE,
                psycopg.pq.TransactionStatus.UNKNOWN,
            ):
                conn.execute("ROLLBACK")
        finally:
            self._pool.putconn(conn)

    def close(self) -> None:
        """Nothing of its own to close: the pool's connections close with the pool."""


def postgres_dsn(url: str) -> str:
    """Accept ``postgresql://``, ``postgres://`` and SQLAlchemy's ``postgresql+psycopg://``."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+")[0] not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: {url!r} (expected postgresql://user@host/db)")
    return f"postgresql://{rest}"


class PostgresStore(SqlStore):
    def __init__(self, url: str) -> None:
        self.dsn = postgres_dsn(url)
        self._pool: ConnectionPool = ConnectionPool(
            self.dsn,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
            min_size=1,
            max_size=POOL_SIZE,
            check=ConnectionPool.check_connection,
            timeout=POOL_WAIT_S,
            # keep trying to reconnect while the database is away (the default gives up
            # after 5 minutes)
            reconnect_timeout=365 * 24 * 3600.0,
            open=False,
            name="valley",
        )
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT_S * 2)
            writer = _PooledConn(self._pool)
            migrate(writer, "postgresql", _MIGRATION_LOCK)
            last = self._tx_last(writer)
        except BaseException:
            self._pool.close()
            raise
        super().__init__(url, writer, lambda: _PooledConn(self._pool), DIALECT)
        # this server's watchers get every server's events from the table, in commit order
        self._tail = EventTail(self.dsn, self._tx.hub, last)
        self._tail.start()

    @staticmethod
    def _tx_last(conn: _PooledConn) -> int:
        conn.begin_read()
        try:
            return last_sequence(conn)
        finally:
            conn.rollback()

    def subscribe(self) -> Subscription:
        """Events committed from now on: those the tail has yet to publish that committed
        before now are left out."""
        sub = self._tx.hub.subscribe()
        try:
            sub.skip_through(self._tx.reading(last_sequence))
        except StoreError:
            # the database is away: nothing commits meanwhile, the tail is up to date
            sub.skip_through(self._tail.last)
        return sub

    def leader_lease(self, holder: str) -> Lease:
        """The advisory lock that makes this server the leader, on a connection of its own."""
        return AdvisoryLease(self.dsn, holder)

    def _close_connections(self) -> None:
        super()._close_connections()
        self._tail.stop()
        self._pool.close()
