"""A throwaway PostgreSQL server for tests (a pytest plugin: ``pytest_plugins = ["tests.pg"]``).

``postgres_server`` (session) runs initdb + pg_ctl from /usr/lib/postgresql/*/bin or PATH in a
temporary directory on a free loopback port, as the ``postgres`` user when running as root
(PostgreSQL refuses to run as root). ``postgres_url`` gives each test a fresh database. Tests are
skipped with a clear message only when no PostgreSQL binaries exist at all.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SUPERUSER = "valley"


def find_pg_bin() -> Path | None:
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True
    )
    for d in candidates:
        if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists():
            return Path(d)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).resolve().parent
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    port: int
    directory: Path
    bindir: Path | None = None
    options: str = ""

    def _ctl(self, *args: str) -> None:
        assert self.bindir is not None
        prefix, _ = _runner()
        data = str(self.directory / "data")
        _run(prefix, [str(self.bindir / "pg_ctl"), "-D", data, *args])

    def stop(self) -> None:
        """Stop the server at once (``-m immediate``: sessions cut as by a crash)."""
        self._ctl("-m", "immediate", "-w", "stop")

    def start(self) -> None:
        self._ctl("-o", self.options, "-l", str(self.directory / "log"), "-w", "-t", "60", "start")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _runner() -> tuple[list[str], str | None]:
    """Command prefix that runs as a non-root user, and that user's name (None: as is)."""
    if os.geteuid() != 0:
        return [], None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("running as root and no 'postgres' user exists to run PostgreSQL as")
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--"], "postgres"
    return ["su", "postgres", "-s", "/bin/sh", "-c"], "postgres"


def _run(prefix: list[str], args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    if prefix and prefix[0] == "su":
        import shlex

        cmd = [*prefix, " ".join(shlex.quote(a) for a in args)]
    else:
        cmd = [*prefix, *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)  # type: ignore[call-overload]


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    bindir = find_pg_bin()
    if bindir is None:
        pytest.skip(
            "PostgreSQL binaries not found (/usr/lib/postgresql/*/bin or PATH): "
            "install the Debian package 'postgresql' (scripts/setup.sh --system)"
        )
    prefix, user = _runner()
    directory = Path(tempfile.mkdtemp(prefix="valley-pg-"))
    data = directory / "data"
    if user is not None:
        pw = pwd.getpwnam(user)
        os.chown(directory, pw.pw_uid, pw.pw_gid)
    port = free_port()
    try:
        _run(
            prefix,
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )
        # no fsync: these are throwaway test databases; unix socket in our own directory
        options = f"-p {port} -h 127.0.0.1 -k {directory} -c fsync=off -c max_connections=200"
        _run(
            prefix,
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(directory / "log"),
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
    except subprocess.CalledProcessError as e:
        log = (directory / "log").read_text() if (directory / "log").exists() else ""
        shutil.rmtree(directory, ignore_errors=True)
        pytest.fail(f"cannot start PostgreSQL from {bindir}: {e.stderr}\n{log}")
    try:
        yield PostgresServer(port, directory, bindir, options)
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            _run(prefix, [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"])
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the session's server."""
    return postgres_server.create_database()
