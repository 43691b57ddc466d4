"""Durable state: the ``Store`` protocol and its SQLite and PostgreSQL implementations, chosen by
URL (SQLAlchemy style): ``sqlite:///relative.db``, ``sqlite:////abs.db``,
``postgresql://user@host/db``."""

from __future__ import annotations

import re

from scheduler.store.base import (
    Admit,
    CycleCommit,
    CycleOutcome,
    Displacement,
    NotFoundError,
    Page,
    PreconditionError,
    PreemptionOutcome,
    PreemptionRecord,
    StateChange,
    StateCounts,
    Store,
    StoreError,
    Submitted,
    Unfit,
    WorkloadEvent,
)
from scheduler.store.events import EventHub, Subscription

_SECRET_PARAM = re.compile(r"(?i)((?:^|[?&;\s])(?:password|passwd|sslpassword)=)[^&;\s]*")
_USERINFO_PASSWORD = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://[^/@:]*:)[^/@]*@")


def redacted(url: str) -> str:
    """``url`` as it may be shown (logs, errors, help, metrics): a password, in the user part
    (``postgresql://valley:s3cret@db/valley``) or as a parameter (``?password=s3cret``), is
    replaced by ``***``. The one place a store URL is made presentable."""
    url = _USERINFO_PASSWORD.sub(r"\1***@", url)
    return _SECRET_PARAM.sub(r"\1***", url)


def _without(url: str, text: str) -> str:
    """``text`` (an error's, which may quote the URL) with the URL redacted."""
    return text.replace(url, redacted(url))


def open_store(url: str) -> Store:
    """Open (creating and migrating as needed) the store at ``url``; raises ``StoreError``
    with the URL and the cause when it cannot."""
    scheme = url.partition("://")[0].split("+")[0]
    try:
        if scheme == "sqlite":
            from scheduler.store.sqlite import SqliteStore

            return SqliteStore(url)
        if scheme in ("postgresql", "postgres"):
            from scheduler.store.postgres import PostgresStore

            return PostgresStore(url)
    except StoreError as e:
        raise StoreError(_without(url, str(e))) from e
    except Exception as e:  # OSError, ValueError, driver errors (sqlite3.Error, psycopg.Error)
        raise StoreError(f"cannot open store {redacted(url)}: {_without(url, str(e))}") from e
    raise StoreError(
        f"unsupported store URL {redacted(url)[:200]!r}: use sqlite:///relative.db, "
        "sqlite:////abs.db or postgresql://user@host/db"
    )


__all__ = [
    "Admit",
    "CycleCommit",
    "CycleOutcome",
    "Displacement",
    "EventHub",
    "NotFoundError",
    "Page",
    "PreconditionError",
    "PreemptionOutcome",
    "PreemptionRecord",
    "StateChange",
    "StateCounts",
    "Store",
    "StoreError",
    "Submitted",
    "Subscription",
    "Unfit",
    "WorkloadEvent",
    "open_store",
    "redacted",
]
