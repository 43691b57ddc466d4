"""The embedded store: one SQLite file in WAL mode with synchronous=FULL, so a commit is on disk
when it returns. One writer connection (behind the store's write lock) and one reader connection
per thread: WAL readers never wait for the writer."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scheduler.store.base import StoreError
from scheduler.store.leadership import Lease
from scheduler.store.sql import Dialect, Row, SqlStore, ThreadReaders, migrate

DIALECT = Dialect("sqlite", for_update="", errors=(sqlite3.Error,))


class _SqliteConn:
    def __init__(self, path: str) -> None:
        # isolation_level=None: no implicit transactions, we issue BEGIN ourselves
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA busy_timeout = 10000")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = FULL")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._conn.execute(sql, tuple(params)).fetchall()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(sql, tuple(params)).rowcount

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)

    def begin_write(self) -> None:
        # IMMEDIATE takes the write lock now, so reads inside see what the write will change
        self._conn.execute("BEGIN IMMEDIATE")

    def begin_read(self) -> None:
        self._conn.execute("BEGIN")

    def commit(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("COMMIT")

    def rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def close(self) -> None:
        self._conn.close()

    def pragma(self, name: str) -> Any:
        return self._conn.execute(f"PRAGMA {name}").fetchone()[0]


def sqlite_path(url: str) -> str:
    """``sqlite:///relative.db`` -> ``relative.db``; ``sqlite:////abs.db`` -> ``/abs.db``."""
    if not url.startswith("sqlite:///"):
        raise ValueError(
            f"not a SQLite URL: {url!r} (expected sqlite:///relative.db or sqlite:////abs.db)"
        )
    path = url[len("sqlite:///") :]
    if not path or path.startswith(":memory:") or "?" in path:
        raise ValueError(
            f"{url!r}: give a database file path (in-memory and options are not supported)"
        )
    return path


class SqliteStore(SqlStore):
    def __init__(self, url: str) -> None:
        path = sqlite_path(url)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        writer = _SqliteConn(path)
        migrate(writer, "sqlite")
        self._readers = ThreadReaders(lambda: _SqliteConn(path), _close_quietly)
        super().__init__(url, writer, self._readers, DIALECT)
        self._lease: FileLease | None = None

    def leader_lease(self, holder: str) -> Lease:
        """The lock file beside the database: SQLite serves one server process, and a second
        one that opens the same file is told so (``FileLease``)."""
        if self._lease is None:
            self._lease = FileLease(self.path + ".lock", holder)
        return self._lease

    def _close_connections(self) -> None:
        super()._close_connections()
        self._readers.close_all()
        if self._lease is not None:
            self._lease.release()


class FileLease:
    """A ``Lease`` for a database one process serves: an exclusive ``flock`` on ``path``, held
    until released or the process ends. There is no fencing to do (term 0): no other server
    can run. ``try_acquire`` raises ``StoreError`` naming the holder if another has it."""

    def __init__(self, path: str, holder: str) -> None:
        self.path = path
        self._holder = holder
        self._fd: int | None = None

    def try_acquire(self) -> int | None:
        if self._fd is not None:
            return 0
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise StoreError(
                f"another Valley server ({other}) has the SQLite store {self.path[:-5]} open: "
                "SQLite serves one server process; run several replicas on PostgreSQL"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, self._holder.encode())
        self._fd = fd
        return 0

    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # frees the lock


def _close_quietly(conn: _SqliteConn) -> None:
    # closing a connection another thread is using fails; it is going away anyway
    with contextlib.suppress(sqlite3.ProgrammingError):
        conn.close()
