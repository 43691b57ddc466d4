"""The shared store: PostgreSQL through psycopg 3. Same schema and logic as SQLite; a commit is
durable when it returns (synchronous_commit on, the server default)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from scheduler.store.sql import Dialect, Row, SqlStore, ThreadReaders, migrate

DIALECT = Dialect("postgresql", for_update=" FOR UPDATE", errors=(psycopg.Error,))
# pg_advisory_xact_lock key: "VALLEY" in ASCII, so that servers migrating at once take turns
_MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(86657676698)"


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


class _PgConn:
    def __init__(self, dsn: str) -> None:
        # autocommit: transactions are the explicit BEGIN ... COMMIT of the store
        self._conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._conn.cursor() as cur:
            cur.execute(_pg(sql), tuple(params))
            return list(cur.fetchall())

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self._conn.cursor() as cur:
            cur.execute(_pg(sql), tuple(params))
            return cur.rowcount

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(_pg(sql), [tuple(r) for r in rows])

    def begin_write(self) -> None:
        self._conn.execute("BEGIN")

    def begin_read(self) -> None:
        # one snapshot for the statements of a read (workloads, then their placements)
        self._conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def commit(self) -> None:
        if self._conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self._conn.execute("COMMIT")

    def rollback(self) -> None:
        if self._conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self._conn.execute("ROLLBACK")

    def close(self) -> None:
        self._conn.close()


def postgres_dsn(url: str) -> str:
    """Accept ``postgresql://``, ``postgres://`` and SQLAlchemy's ``postgresql+psycopg://``."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+")[0] not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: {url!r} (expected postgresql://user@host/db)")
    return f"postgresql://{rest}"


class PostgresStore(SqlStore):
    def __init__(self, url: str) -> None:
        self.dsn = postgres_dsn(url)
        writer = _PgConn(self.dsn)
        migrate(writer, "postgresql", _MIGRATION_LOCK)
        self._readers = ThreadReaders(lambda: _PgConn(self.dsn), lambda c: c.close())
        super().__init__(url, writer, self._readers, DIALECT)

    def _close_connections(self) -> None:
        super()._close_connections()
        self._readers.close_all()
