"""What the SQL store needs from a database: a small connection protocol, the dialect's few
differences, one read connection per thread, and ``IN (...)`` lists of bounded length."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

Row = tuple[Any, ...]
IN_CHUNK = 500  # ids per IN (...) list


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
    # errors after which the same read may well succeed at once (a connection that broke)
    transient: tuple[type[BaseException], ...] = ()
    # several servers share the database: committed events reach this process's watchers
    # through the database (``notify`` wakes them), not straight from the commit
    shared: bool = False
    notify: str = ""  # run in every transaction that writes events
    # run with a tenant (one placeholder) before the tenant's holdings are read for a quota
    # check, so that servers sharing the database admit one tenant's submissions in turn
    tenant_lock: str = ""


def in_lists(ids: Sequence[str]) -> Iterator[tuple[str, list[str]]]:
    """``ids`` in chunks of at most ``IN_CHUNK``: each as its placeholders (``?, ?, ?``) and
    its values."""
    for i in range(0, len(ids), IN_CHUNK):
        chunk = list(ids[i : i + IN_CHUNK])
        yield ", ".join("?" * len(chunk)), chunk
