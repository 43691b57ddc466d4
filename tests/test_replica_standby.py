"""A follower on PostgreSQL keeps a warm solver process ready (``StandbySolver``) and hands it to
the loop it runs when it takes the lead: the new leader's first placement does not wait for a
solver process to start. Stopping a server leaves no solver process behind; SQLite's only
server keeps no standby.

In-process replicas on a real PostgreSQL (skipped without one), then ``valley serve``
processes killed with -9 as in ``valley bench failover``."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from scheduler.bench.failover_support import Servers, pg_query, until
from scheduler.domain import Scenario, WorkloadState
from scheduler.replica import Replica
from scheduler.store import open_store
from scheduler.store.sql import SqlStore
from tests.conftest import TINY
from tests.test_service_process import solver_processes
from tests.test_service_support import PLACED, Client, cpu_spec, wait_settled
from tests.test_store_contract import spec

pytest_plugins = ["tests.pg"]
pytestmark = [pytest.mark.integration]

WARM_S = 60.0  # a solver process's start and warm-up, on a loaded machine


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie waiting for its reaper counts)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


@contextlib.contextmanager
def _replicas(url: str, scenario: Scenario) -> Iterator[Callable[..., Replica]]:
    """A function that starts a replica on ``url`` (trying the lease every ``poll_s``
    seconds); all are stopped, their stores closed after."""
    started: list[Replica] = []

    def start(poll_s: float = 0.1) -> Replica:
        store = open_store(url)
        assert isinstance(store, SqlStore)
        replica = Replica(store, scenario, poll_s=poll_s)
        started.append(replica)
        replica.start()
        return replica

    try:
        yield start
    finally:
        for r in started:
            r.stop()
            r._store.close()


def _leader_and_follower(
    start: Callable[..., Replica], leader_poll_s: float = 0.1
) -> tuple[Replica, Replica, int]:
    """Two replicas, the first leading, and the pid of the follower's warm standby solver."""
    leader, follower = start(leader_poll_s), start()
    assert leader.leading and not follower.leading
    until(lambda: follower.standby_pid is not None, WARM_S, "a warm standby solver")
    standby = follower.standby_pid
    assert standby is not None
    return leader, follower, standby


def test_a_follower_keeps_a_warm_solver_process_when_another_server_leads(
    postgres_url: str, tiny: Scenario
) -> None:
    with _replicas(postgres_url, tiny) as start:
        leader, _, standby = _leader_and_follower(start)
        assert leader.standby_pid is None  # the leader's loop has the solver it uses
        assert leader.loop is not None
        assert {leader.loop.solver_pid, standby} <= solver_processes(os.getpid())
        assert not _gone(standby)


def test_a_follower_is_ready_once_its_standby_solver_is_warm(
    postgres_url: str, tiny: Scenario
) -> None:
    with _replicas(postgres_url, tiny) as start:
        start()
        follower = start()
        assert not follower.leading
        assert follower.wait_ready(WARM_S)  # as a server waits before it serves
        assert follower.standby_pid is not None


def test_the_new_leaders_loop_places_with_the_followers_solver_when_the_leader_stops(
    postgres_url: str, tiny: Scenario
) -> None:
    with _replicas(postgres_url, tiny) as start:
        leader, follower, standby = _leader_and_follower(start)
        before = solver_processes(os.getpid())
        leader.stop()  # its lease released: the follower takes it at its next poll
        until(lambda: follower.leading, 10, "the follower leading")
        loop = follower.loop
        assert loop is not None
        assert loop.solver_pid == standby
        # warm from its start: no solver process to start, no warm-up to wait for
        assert loop.wait_ready(1.0)
        sub = follower._store.submit("after", "h", [spec(cpu=500)], datetime.now(UTC))
        wid = sub.workloads[0].id
        until(lambda: follower._store.get(wid).state == WorkloadState.PLACED, 10, "the placement")
        # the standby solved it: this process started no other solver process meanwhile
        assert standby in solver_processes(os.getpid()) <= before
        assert follower.standby_pid is None  # leading: none kept until it steps down


def test_a_leader_that_lost_its_lease_builds_a_standby_when_another_server_took_over(
    postgres_url: str, tiny: Scenario
) -> None:
    with _replicas(postgres_url, tiny) as start:
        # the leader checks its lease every second, the follower tries it every 0.1 s: the
        # follower takes it before the old leader notices it lost it
        leader, follower, standby = _leader_and_follower(start, leader_poll_s=1.0)
        assert leader.loop is not None
        old_solver = leader.loop.solver_pid
        assert old_solver is not None
        # the lease's session ends, as when the leader's connection to the database breaks
        lock = "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        pg_query(postgres_url)(f"SELECT pg_terminate_backend(pid) FROM ({lock}) AS l")
        until(lambda: follower.leading and not leader.leading, 10, "the follower leading")
        assert follower.loop is not None and follower.loop.solver_pid == standby
        until(lambda: leader.standby_pid is not None, WARM_S, "the old leader's new standby")
        assert leader.standby_pid not in (standby, old_solver) and _gone(old_solver)


@pytest.mark.slow
def test_a_standby_whose_solver_process_died_is_replaced_by_a_warm_one(
    postgres_url: str, tiny: Scenario
) -> None:
    with _replicas(postgres_url, tiny) as start:
        _, follower, first = _leader_and_follower(start)
        os.kill(first, signal.SIGKILL)
        until(
            lambda: follower.standby_pid not in (None, first), WARM_S, "a new warm standby solver"
        )
        second = follower.standby_pid
        assert second is not None and not _gone(second) and _gone(first)


def test_stopping_a_follower_ends_its_standby_solver_process(
    postgres_url: str, tiny: Scenario
) -> None:
    with _replicas(postgres_url, tiny) as start:
        _, follower, standby = _leader_and_follower(start)
        follower.stop()
        assert _gone(standby) and standby not in solver_processes(os.getpid())
        assert follower.standby_pid is None


def test_a_sqlite_server_keeps_no_standby_solver_when_it_leads_alone(
    tmp_path: Path, tiny: Scenario
) -> None:
    with _replicas(f"sqlite:///{tmp_path}/valley.db", tiny) as start:
        replica = start()
        assert replica.leading and replica.loop is not None
        assert replica.standby_pid is None and replica._standby is None


@pytest.mark.slow
def test_after_kill_9_of_the_leader_the_follower_leads_with_its_standby_and_stop_leaves_no_child(
    tmp_path: Path, postgres_url: str
) -> None:
    url = postgres_url
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY)
    with contextlib.ExitStack() as stack:
        servers = Servers(tmp_path, url, stack, str(scenario))
        servers.start_many(2)
        leader = servers.leader(pg_query(url))
        (follower,) = (s for s in servers.live if s is not leader)
        until(lambda: solver_processes(follower.proc.pid), WARM_S, "the follower's standby")
        (standby,) = solver_processes(follower.proc.pid)
        servers.kill(leader)
        assert servers.leader(pg_query(url)) is follower
        # it places with the standby's process, the only solver it has: it started no other
        client = Client.connect(follower.port)
        client.submit([cpu_spec(0.5, name=f"after{i}") for i in range(3)])
        placed = wait_settled(client, 30)
        client.close()
        assert [w.state for w in placed] == [PLACED] * 3
        assert solver_processes(follower.proc.pid) == {standby}
        follower.stop()
        until(lambda: _gone(standby), 10, "the solver process ending with its server")
