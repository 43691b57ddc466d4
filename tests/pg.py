"""A throwaway PostgreSQL server for tests (a pytest plugin: ``pytest_plugins = ["tests.pg"]``).

``postgres_server`` (session) is ``scheduler.bench.postgres.throwaway_postgres``: initdb +
pg_ctl from /usr/lib/postgresql/*/bin or PATH in a temporary directory on a free loopback port,
as the ``postgres`` user when running as root. ``postgres_url`` gives each test a fresh database.
Tests are skipped with a clear message only when no PostgreSQL binaries exist at all; a server
that exists but cannot be run fails them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from scheduler.bench.postgres import (
    SUPERUSER,
    PostgresError,
    PostgresServer,
    PostgresUnavailable,
    find_pg_bin,
    free_port,
    throwaway_postgres,
)

__all__ = ["SUPERUSER", "PostgresServer", "find_pg_bin", "free_port", "running_postgres"]


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A throwaway server for the ``with`` block; skips the test without PostgreSQL."""
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(throwaway_postgres())
        except PostgresUnavailable as e:
            pytest.skip(str(e))
        except PostgresError as e:
            pytest.fail(str(e))
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the session's server."""
    return postgres_server.create_database()
