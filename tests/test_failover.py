"""Several ``valley serve`` processes on one PostgreSQL: kill -9 the leader again and again, and
restart the database, under continuous submissions through every server; then nothing accepted
is lost or duplicated, nothing was placed twice or over a node's capacity, and every watcher saw
every event once. And 20 kill -9 of a single server on SQLite under load, with the same checks.

The failover times (kill -9 to the first placement the new leader commits) are printed and
written to ``failover.json`` in the test's directory (the run's median and worst)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.failover_support import (
    Query,
    Servers,
    Submitters,
    node_capacity,
    store_problems,
    until,
    wait_all_completed,
    watcher_problems,
    watching,
)
from tests.pg import running_postgres

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KILLS = 5
SQLITE_KILLS = 20


def _pg_query(url: str) -> Query:
    def query(sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            return list(conn.execute(sql).fetchall())

    return query


def _leader(servers: Servers, query: Query) -> Any:
    holder = query("SELECT holder FROM leadership")[0][0]
    pid = int(holder.rpartition(":")[2] or 0)
    return next((s for s in servers.live if s.proc.pid == pid), None)


def test_placements_resume_within_5_s_of_killing_the_leader_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    with running_postgres() as pg, contextlib.ExitStack() as stack:
        url = pg.create_database()
        query = _pg_query(url)
        servers = Servers(tmp_path, url, stack)
        for _ in range(3):
            servers.start()
        capacity = node_capacity(servers.live[0].port)
        failovers: list[float] = []
        problems: list[str] = []
        with watching(servers.ports()) as watchers, Submitters(servers.ports) as submitters:
            until(lambda: len(submitters.accepted) > 20, 20, "submissions flowing")
            for _ in range(KILLS):
                leader = until_leader(servers, query)
                time.sleep(0.5)  # work pending at the moment of the kill
                killed_at = time.time()
                servers.kill(leader)
                dead = watchers.pop(leader.port)
                dead.close()
                problems += watcher_problems(f"watcher on killed {leader.port}", dead.sequences)
                failovers.append(
                    until(
                        lambda t=killed_at: query(
                            f"SELECT COUNT(*) FROM workloads WHERE placed_at > {t}"
                        )[0][0],
                        30,
                        "a placement after the leader died",
                    )
                )
                new = servers.start()
                watchers[new.port] = type(dead)(new.port)
            # the database restarted under load
            pg.stop()
            time.sleep(1.0)
            pg.start()
            back = time.time()
            until(lambda: submitters.first_accepted_after(back), 15, "a submission after restart")
            resumed = submitters.first_accepted_after(back) - back  # type: ignore[operator]
            placing = until(
                lambda: query(f"SELECT COUNT(*) FROM workloads WHERE placed_at > {back}")[0][0],
                30,
                "a placement after the database restart",
            )
            submitters.stop()
            wait_all_completed(query)
            last = int(query("SELECT last FROM event_sequence")[0][0])
            for port, w in watchers.items():
                until(lambda w=w: w.sequences and w.sequences[-1] >= last, 20, f"watcher {port}")
                problems += watcher_problems(f"watcher on {port}", w.sequences, last)
        problems += store_problems(query, submitters.accepted, capacity)
        report = {
            "failover_s": failovers,
            "median_s": statistics.median(failovers),
            "worst_s": max(failovers),
            "db_restart_submissions_resumed_s": resumed,
            "db_restart_placements_resumed_s": placing,
            "workloads": len(submitters.accepted),
        }
        (tmp_path / "failover.json").write_text(json.dumps(report, indent=1))
        print(f"\nfailover: {json.dumps(report)}")
        assert problems == []
        assert max(failovers) <= 5.0, failovers
        assert resumed <= 10.0


def until_leader(servers: Servers, query: Query) -> Any:
    found: list[Any] = []

    def leader() -> bool:
        s = _leader(servers, query)
        if s is not None:
            found.append(s)
        return s is not None

    until(leader, 15, "a leader among the live servers", 0.1)
    return found[-1]


def test_twenty_kill_9_of_a_sqlite_server_under_load_lose_and_duplicate_nothing(
    tmp_path: Path,
) -> None:
    db = tmp_path / "valley.db"

    def query(sql: str) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
            return conn.execute(sql).fetchall()

    problems: list[str] = []
    with contextlib.ExitStack() as stack:
        servers = Servers(tmp_path, f"sqlite:///{db}", stack)
        server = servers.start()
        capacity = node_capacity(server.port)
        with Submitters(servers.ports, n=2) as submitters:
            for i in range(SQLITE_KILLS):
                with watching([server.port]) as watchers:
                    n = len(submitters.accepted)
                    until(lambda n=n: len(submitters.accepted) > n + 4, 20, f"work before kill {i}")
                    servers.kill(server)
                    problems += watcher_problems(f"watcher {i}", watchers[server.port].sequences)
                server = servers.start()
            submitters.stop()
        wait_all_completed(query)
    problems += store_problems(query, submitters.accepted, capacity)
    assert problems == []
