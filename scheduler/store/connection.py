"""What the SQL store needs of a database: connections (one writer, a reader per thread), the
dialect's differences, and the schema migrations run on start."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from scheduler.store.base import StoreError

log = logging.getLogger(__name__)

Row = tuple[Any, ...]


class Conn(Protocol):
    """The little a store needs from a DB-API connection; SQL uses ``?`` placeholders."""

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def begin_write(self) -> None: ...

    def begin_read(self) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def close(self) -> None: ...


C = TypeVar("C", bound="Conn")


class ThreadReaders(Generic[C]):
    """One read connection per thread, opened on first use and all closed together."""

    def __init__(self, open_conn: Callable[[], C], close_conn: Callable[[C], None]) -> None:
        self._open = open_conn
        self._close = close_conn
        self._local = threading.local()
        self._conns: list[C] = []
        self._lock = threading.Lock()

    def __call__(self) -> C:
        conn: C | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open()
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def close_all(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            self._close(conn)


@dataclass(frozen=True)
class Dialect:
    name: str
    for_update: str  # appended to SELECTs inside a write transaction
    errors: tuple[type[BaseException], ...]  # driver errors that mean "store unavailable"


def migrate(conn: Conn, dialect: str, lock: str = "") -> int:
    """Bring the schema to the latest version; returns the version reached. ``lock`` is a
    statement run first in each migration transaction (PostgreSQL: an advisory lock, so that
    two servers starting together do not both migrate)."""
    from scheduler.store.migrations import LATEST, MIGRATIONS

    conn.begin_write()
    try:
        if lock:
            conn.execute(lock)
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        rows = conn.query("SELECT MAX(version) FROM schema_version")
        version = int(rows[0][0] or 0)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    if version > LATEST:
        raise StoreError(
            f"the database schema is version {version}, newer than this Valley knows ({LATEST}); "
            "upgrade Valley"
        )
    for m in MIGRATIONS:
        if m.version <= version:
            continue
        conn.begin_write()
        try:
            if lock:
                conn.execute(lock)
            current = int(conn.query("SELECT MAX(version) FROM schema_version")[0][0] or 0)
            if current < m.version:
                for statement in m.sqlite if dialect == "sqlite" else m.postgresql:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (m.version,))
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        log.info("store schema migrated to version %d (%s)", m.version, m.description)
        version = m.version
    return version
