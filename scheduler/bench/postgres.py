"""A throwaway PostgreSQL server on loopback, for benchmarks and tests.

``throwaway_postgres()`` runs initdb + pg_ctl from /usr/lib/postgresql/*/bin or PATH in a
temporary directory on a free loopback port (trust authentication, fsync off: the data is thrown
away), as the ``postgres`` user when running as root (PostgreSQL refuses to run as root), and
removes it all after. ``PostgresUnavailable`` says that no PostgreSQL binaries exist (and how to
install them); ``PostgresError`` that they exist but the server could not be run.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SUPERUSER = "valley"
MISSING = (
    "PostgreSQL binaries not found (/usr/lib/postgresql/*/bin or PATH): "
    "install the Debian package 'postgresql' (scripts/setup.sh --system)"
)


class PostgresError(RuntimeError):
    """PostgreSQL is installed but a throwaway server could not be run."""


class PostgresUnavailable(PostgresError):
    """No PostgreSQL binaries (initdb, pg_ctl) on this machine."""


def find_pg_bin() -> Path | None:
    """The directory of the newest initdb and pg_ctl, or None."""
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
    """A TCP port free on loopback at the moment of asking."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    """A running throwaway server: stop and start it again, make databases on it."""

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
        """Start the stopped server again, on the same port and data."""
        self._ctl("-o", self.options, "-l", str(self.directory / "log"), "-w", "-t", "60", "start")

    def url(self, database: str = "postgres") -> str:
        """The URL of ``database`` on this server (no password: trust authentication)."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A fresh, empty database: its URL."""
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
        raise PostgresError(
            "running as root and no 'postgres' user exists to run PostgreSQL as"
        ) from None
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--"], "postgres"
    return ["su", "postgres", "-s", "/bin/sh", "-c"], "postgres"


def _run(prefix: list[str], args: list[str]) -> subprocess.CompletedProcess[str]:
    if prefix and prefix[0] == "su":
        cmd = [*prefix, " ".join(shlex.quote(a) for a in args)]
    else:
        cmd = [*prefix, *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True)


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server in a temporary directory for the ``with`` block, then removed."""
    bindir = find_pg_bin()
    if bindir is None:
        raise PostgresUnavailable(MISSING)
    prefix, user = _runner()
    directory = Path(tempfile.mkdtemp(prefix="valley-pg-"))
    data = directory / "data"
    if user is not None:
        pw = pwd.getpwnam(user)
        os.chown(directory, pw.pw_uid, pw.pw_gid)
    port = free_port()
    initdb = [str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust"]
    # no fsync: the data is thrown away; the unix socket in our own directory
    options = f"-p {port} -h 127.0.0.1 -k {directory} -c fsync=off -c max_connections=200"
    server = PostgresServer(port, directory, bindir, options)
    try:
        _run(prefix, [*initdb, "-E", "UTF8", "--no-sync"])
        server.start()
    except subprocess.CalledProcessError as e:
        log = (directory / "log").read_text() if (directory / "log").exists() else ""
        shutil.rmtree(directory, ignore_errors=True)
        raise PostgresError(f"cannot start PostgreSQL from {bindir}: {e.stderr}\n{log}") from None
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            _run(prefix, [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"])
        shutil.rmtree(directory, ignore_errors=True)
