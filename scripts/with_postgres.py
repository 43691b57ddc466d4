"""Runs a command next to a throwaway PostgreSQL server, started as the tests start theirs
(scheduler/bench/postgres.py: initdb in a temporary directory, a free loopback port, fsync off),
and removed after. Each ``{db}`` in the command becomes the URL of a fresh, empty database.

    python scripts/with_postgres.py -- python -m scheduler.cli bench service \\
        --store sqlite --store {db}
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scheduler.bench.postgres import throwaway_postgres  # after the repository is on the path


def main(argv: list[str]) -> int:
    command = argv[1:] if argv[:1] == ["--"] else argv
    if not command:
        print(__doc__, file=sys.stderr)
        return 2
    with throwaway_postgres() as server:
        args = [server.create_database() if a == "{db}" else a for a in command]
        return subprocess.run(args, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
