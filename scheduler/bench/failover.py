"""``valley bench failover``: how fast several replicas on one PostgreSQL recover when the leader
dies or the database restarts, and that nothing is lost doing so.

A throwaway PostgreSQL server on loopback (``scheduler.bench.postgres``; the bench says so and
stops when PostgreSQL is not installed), ``--servers`` ``valley serve`` processes on one database
of it, ``--submitters`` threads submitting two-workload requests (one-second workloads) through
every server in turn at about ``--rate`` workloads a second (a failed request is sent again, with
its request id, until a server accepts it), and a watcher on every server. Then ``--kills`` times:
kill -9 the leader, wait for a placement, start a replacement server; then the database is
stopped at once (as by a crash) and started again after ``--db-down`` seconds. Bounded: every
wait has a timeout (30 s for a placement), the load stops after the restart and what was
accepted must complete within 60 s.

Rows, one per event (times from the store's own clock stamps, seconds):

- ``kill N``: ``elected_s`` (kill -9 -> the new leader took its term), ``failover_s`` (kill -9
  -> the first placement committed after it), ``accepted`` (workloads accepted so far)
- ``db restart``: ``submissions_resumed_s`` (database back -> the first request accepted after),
  ``placements_resumed_s`` (database back -> the first placement after)

Summary: the median and worst ``failover_s``, workloads accepted, and the checks: every accepted
workload stored exactly once and nothing else (lost, never_accepted, duplicate_ids), none placed
twice, no node over capacity, every watcher saw every event once in order (``problems``: what
failed, in words; ``passed``). The command exits 1 when a check fails.

Targets (issue 12; measured, not asserted): failover <= 5 s, submissions again <= 10 s after the
database is back; 0 lost, 0 duplicated, 0 over capacity. tests/test_failover.py runs this bench
for its checks (and its columns), never its times.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import click

from scheduler.bench.failover_support import (
    Query,
    Servers,
    StoreChecks,
    Submitters,
    Watcher,
    node_capacity,
    pg_query,
    store_checks,
    until,
    wait_all_completed,
    watcher_problems,
    watching,
)
from scheduler.bench.postgres import PostgresError, PostgresServer, throwaway_postgres
from scheduler.bench.report import emit, output_option, plot_option, progress, save_plot

COLUMNS = (
    "event",
    "elected_s",
    "failover_s",
    "accepted",
    "submissions_resumed_s",
    "placements_resumed_s",
)
PLACEMENT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Settings:
    """What a run does (see the module's docstring)."""

    servers: int = 3
    kills: int = 10
    submitters: int = 3
    rate: float = 30.0  # workloads a second, about (two per request)
    scenario: str = "beijing-hebei"
    db_down_s: float = 1.0


@dataclass
class Outcome:
    """A run's rows, the workloads accepted, and the checks of the end state."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    accepted: int = 0
    checks: StoreChecks | None = None
    watcher_problems: list[str] = field(default_factory=list)

    @property
    def failovers(self) -> list[float]:
        return [r["failover_s"] for r in self.rows if r["failover_s"] is not None]

    def problems(self) -> list[str]:
        """Every check that failed, in words (empty: all passed)."""
        return [
            *(self.checks.problems() if self.checks else ["not checked"]),
            *self.watcher_problems,
        ]

    def summary(self) -> dict[str, Any]:
        failovers = self.failovers
        return {
            "failover_median_s": statistics.median(failovers) if failovers else None,
            "failover_worst_s": max(failovers, default=None),
            "workloads_accepted": self.accepted,
            **(asdict(self.checks) if self.checks else {}),
            "problems": self.problems(),
            "passed": not self.problems(),
        }


def _row(event: str, **values: Any) -> dict[str, Any]:
    return {"event": event, **{c: values.get(c) for c in COLUMNS[1:]}}


def _after(query: Query, sql_min: str, t: float) -> float | None:
    """``sql_min`` (a query of one MIN of epoch seconds) minus ``t``, or None."""
    value = query(sql_min)[0][0]
    return None if value is None else float(value) - t


def _kill_leader(
    servers: Servers, query: Query, watchers: dict[int, Watcher], out: Outcome
) -> None:
    """kill -9 the leader with work pending, time its successor, start a replacement."""
    leader = servers.leader(query)
    time.sleep(0.5)  # work pending at the moment of the kill
    killed_at = time.time()
    servers.kill(leader)
    # the dead leader stamped its last placements before it was gone: whatever is stamped
    # later, its successor placed (times count from the kill, the lock freed after it)
    gone_at = time.time()
    dead = watchers.pop(leader.port)
    dead.close()
    out.watcher_problems += watcher_problems(f"watcher on killed {leader.port}", dead.sequences)
    placed_after = f"SELECT MIN(placed_at) FROM workloads WHERE placed_at > {gone_at}"
    until(
        lambda: query(placed_after)[0][0] is not None,
        PLACEMENT_TIMEOUT_S,
        "a placement after the leader died",
    )
    elected = f"SELECT MIN(since) FROM leadership WHERE since > {killed_at}"
    out.rows.append(
        _row(
            f"kill {len(out.rows) + 1}",
            elected_s=_after(query, elected, killed_at),
            failover_s=_after(query, placed_after, killed_at),
            accepted=out.accepted,
        )
    )
    new = servers.start()
    watchers[new.port] = Watcher(new.port)


def _restart_database(
    pg: PostgresServer, query: Query, submitters: Submitters, down_s: float, out: Outcome
) -> None:
    pg.stop()
    time.sleep(down_s)
    pg.start()
    back = time.time()
    until(lambda: submitters.first_accepted_after(back), 15, "a submission after the restart")
    placed_after = f"SELECT MIN(placed_at) FROM workloads WHERE placed_at > {back}"
    until(
        lambda: query(placed_after)[0][0] is not None,
        PLACEMENT_TIMEOUT_S,
        "a placement after the database restart",
    )
    first = submitters.first_accepted_after(back)
    out.rows.append(
        _row(
            "db restart",
            submissions_resumed_s=None if first is None else first - back,
            placements_resumed_s=_after(query, placed_after, back),
        )
    )


def _caught_up(watcher: Watcher, last: int) -> bool:
    return bool(watcher.sequences) and watcher.sequences[-1] >= last


def run(pg: PostgresServer, directory: Path, settings: Settings) -> Outcome:
    """One failover run on a fresh database of ``pg``; servers work in ``directory``.
    ``AssertionError`` when something it waits for does not happen in time."""
    url = pg.create_database()
    query = pg_query(url)
    out = Outcome()
    pause = settings.submitters * 2 / settings.rate
    with contextlib.ExitStack() as stack:
        servers = Servers(directory, url, stack, settings.scenario)
        servers.start_many(settings.servers)
        capacity = node_capacity(servers.live[0].port)
        with (
            watching(servers.ports()) as watchers,
            Submitters(servers.ports, settings.submitters, pause) as submitters,
        ):
            until(lambda: len(submitters.accepted) > 20, 20, "submissions flowing")
            for _ in progress(range(settings.kills), total=settings.kills, desc="failover"):
                out.accepted = len(submitters.accepted)
                _kill_leader(servers, query, watchers, out)
            _restart_database(pg, query, submitters, settings.db_down_s, out)
            submitters.stop()
            wait_all_completed(query)
            last = int(query("SELECT last FROM event_sequence")[0][0])
            for port, w in watchers.items():
                until(partial(_caught_up, w, last), 20, f"watcher {port}")
                out.watcher_problems += watcher_problems(f"watcher on {port}", w.sequences, last)
    out.accepted = len(submitters.accepted)
    out.checks = store_checks(query, submitters.accepted, capacity)
    return out


def _plot(out: Outcome, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kills = [r for r in out.rows if r["failover_s"] is not None]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar([r["event"] for r in kills], [r["failover_s"] for r in kills], label="failover")
    ax.plot(
        [r["event"] for r in kills], [r["elected_s"] or 0 for r in kills], "ko", label="elected"
    )
    ax.axhline(5.0, color="r", linestyle="--", label="target 5 s")
    ax.set_ylabel("seconds after kill -9")
    ax.legend()
    fig.suptitle("valley bench failover")
    save_plot(fig, path)


@click.command("failover")
@click.option(
    "--kills",
    type=click.IntRange(1, 50),
    default=10,
    show_default=True,
    help="times the leader is killed",
)
@click.option(
    "--servers",
    type=click.IntRange(2, 8),
    default=3,
    show_default=True,
    help="valley serve replicas",
)
@click.option(
    "--submitters",
    type=click.IntRange(1, 16),
    default=3,
    show_default=True,
    help="submitting threads (each sends two workloads a request to every server in turn)",
)
@click.option(
    "--rate",
    type=click.FloatRange(1, 500),
    default=30.0,
    show_default=True,
    help="workloads a second offered, about (each runs one second)",
)
@click.option(
    "--db-down",
    type=click.FloatRange(0, 30),
    default=1.0,
    show_default=True,
    help="seconds the database stays down in its restart",
)
@click.option(
    "--scenario", default="beijing-hebei", show_default=True, help="scenario of the Valley servers"
)
@output_option
@plot_option
def command(
    kills: int,
    servers: int,
    submitters: int,
    rate: float,
    db_down: float,
    scenario: str,
    output: str,
    plot_path: str | None,
) -> None:
    """Kill -9 the leader of several replicas on PostgreSQL again and again, and restart the
    database, under load: the failover times, and that nothing was lost or duplicated."""
    settings = Settings(servers, kills, submitters, rate, scenario, db_down)
    load_before = _load_average()
    try:
        with (
            throwaway_postgres() as pg,
            tempfile.TemporaryDirectory(prefix="valley-bench-") as tmp,
        ):
            out = run(pg, Path(tmp), settings)
    except PostgresError as e:
        raise click.ClickException(f"valley bench failover needs PostgreSQL: {e}") from None
    except AssertionError as e:
        raise click.ClickException(f"the run did not recover: {e}") from None
    params = {**asdict(settings), "load_average": {"start": load_before, "end": _load_average()}}
    emit("failover", params, out.rows, output, COLUMNS, summary=out.summary())
    if plot_path:
        _plot(out, plot_path)
    if out.problems():
        raise click.ClickException(f"checks failed: {'; '.join(out.problems())}")


def _load_average() -> Sequence[float] | None:
    """The machine's load averages (shared machines: read the figures with them)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
