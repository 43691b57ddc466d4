"""What failover and crash runs share (``valley bench failover``, tests/test_failover.py):
``valley serve`` processes started and killed at will, continuous submissions that never give
up on a request, watchers, and the checks of the end state against the store."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler._proto.valley.v1 import placement_pb2_grpc as pb_grpc
from scheduler.bench.service import Target, valley_server
from scheduler.domain import WorkloadState

Query = Callable[[str], list[tuple[Any, ...]]]
SPEC = pb.WorkloadSpec(
    tenant="t", name="f", resources=pb.Resources(cpu_millis=250, memory_mib=256), duration_s=1
)


def pg_query(url: str) -> Query:
    """Run SQL on a PostgreSQL database, a connection per query (it outlives restarts)."""
    import psycopg

    def query(sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            return list(conn.execute(sql).fetchall())

    return query


class Servers:
    """``valley serve`` processes on one store, started and killed at will."""

    def __init__(
        self, directory: Path, store: str, stack: contextlib.ExitStack, scenario: str
    ) -> None:
        self._directory = directory
        self._store = store
        self._stack = stack
        self._scenario = scenario
        self.live: list[Target] = []

    def start(self) -> Target:
        return self.start_many(1)[0]

    def start_many(self, n: int) -> list[Target]:
        """``n`` servers started at once (each spends seconds warming its solver up)."""
        # batches gathered for 10 ms, as a busy server would
        starting = [
            valley_server(
                str(self._directory),
                self._scenario,
                "valley",
                store=self._store,
                extra=("--batch-window-ms", "10", "--grace", "5"),
            )
            for _ in range(n)
        ]
        # enter_context only appends to the stack's deque, safe from threads; when one start
        # fails, those that started are on the stack and stopped with it
        with ThreadPoolExecutor(n) as pool:
            futures = [pool.submit(self._stack.enter_context, cm) for cm in starting]
        servers = [f.result() for f in futures]
        self.live += servers
        return servers

    def kill(self, server: Target) -> None:
        """kill -9, and wait until the process is gone."""
        self.live.remove(server)
        server.proc.kill()
        server.proc.wait(timeout=30)

    def ports(self) -> list[int]:
        return [s.port for s in self.live]

    def leader(self, query: Query, timeout: float = 15) -> Target:
        """The live server that holds the store's leadership (waits for one)."""
        found: list[Target] = []

        def holder() -> bool:
            name = query("SELECT holder FROM leadership")[0][0]
            pid = int(name.rpartition(":")[2] or 0)
            found[:] = [s for s in self.live if s.proc.pid == pid]
            return bool(found)

        until(holder, timeout, "a leader among the live servers", 0.1)
        return found[0]


class Submitters:
    """``n`` threads submitting two workloads at a time to the live servers in turn, pausing
    ``pause_s`` after each request; a request that fails is sent again, with its request_id,
    until one server accepts it."""

    def __init__(self, ports: Callable[[], list[int]], n: int = 3, pause_s: float = 0.1) -> None:
        self._ports = ports
        self._pause = pause_s
        self.accepted: dict[str, str] = {}  # workload id -> request_id
        self.accepted_at: list[float] = []  # time.time() of each accepted request
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(n)]

    def __enter__(self) -> Submitters:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def _run(self, i: int) -> None:
        turn = i
        stubs: dict[int, Any] = {}
        while not self._stop.is_set():
            request_id = uuid.uuid4().hex
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                ports = self._ports()
                if not ports:
                    time.sleep(0.1)
                    continue
                port = ports[turn % len(ports)]
                turn += 1
                try:
                    stub = stubs.get(port)
                    if stub is None:
                        stub = stubs[port] = _placement(grpc.insecure_channel(f"127.0.0.1:{port}"))
                    resp = stub.SubmitWorkloads(
                        pb.SubmitWorkloadsRequest(request_id=request_id, workloads=[SPEC, SPEC]),
                        timeout=5,
                    )
                except grpc.RpcError:
                    time.sleep(0.05)
                    continue
                with self._lock:
                    for w in resp.workloads:
                        self.accepted[w.id] = request_id
                    self.accepted_at.append(time.time())
                break
            else:
                raise AssertionError(f"request {request_id} accepted by no server in 60 s")
            time.sleep(self._pause)

    def first_accepted_after(self, t: float) -> float | None:
        """When the first request after ``t`` (``time.time()``) was accepted, or None."""
        with self._lock:
            later = [a for a in self.accepted_at if a > t]
        return min(later) if later else None


class Watcher:
    """Every event one server streams, until the stream ends."""

    def __init__(self, port: int) -> None:
        self.sequences: list[int] = []
        self._channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = _placement(self._channel)
        self._stream = stub.WatchWorkloads(pb.WatchWorkloadsRequest())
        self._stream.initial_metadata()  # open before anything is submitted through it
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(grpc.RpcError):
            for ev in self._stream:
                self.sequences.append(ev.sequence)

    def close(self) -> None:
        self._stream.cancel()
        self._channel.close()


def _placement(channel: grpc.Channel) -> Any:
    return pb_grpc.PlacementServiceStub(channel)


@contextlib.contextmanager
def watching(ports: Sequence[int]) -> Iterator[dict[int, Watcher]]:
    """A ``Watcher`` on each port (by port) for the ``with`` block."""
    watchers = {p: Watcher(p) for p in ports}
    try:
        yield watchers
    finally:
        for w in watchers.values():
            w.close()


def watcher_problems(name: str, seqs: Sequence[int], last: int | None = None) -> list[str]:
    """A watcher saw each event once, in order, without a gap (up to ``last`` if given)."""
    if not seqs:
        return [f"{name}: saw no event"]
    if list(seqs) != list(range(seqs[0], seqs[0] + len(seqs))):
        gaps = [(a, b) for a, b in itertools.pairwise(seqs) if b != a + 1][:5]
        return [f"{name}: not each event once in order: {gaps}"]
    if last is not None and seqs[-1] != last:
        return [f"{name}: ended at event {seqs[-1]}, the store's last is {last}"]
    return []


def wait_all_completed(query: Query, timeout: float = 60) -> None:
    """Wait until no workload is pending or placed (every ``SPEC`` runs one second)."""
    active = f"({int(WorkloadState.PENDING)}, {int(WorkloadState.PLACED)})"
    until(
        lambda: not query(f"SELECT COUNT(*) FROM workloads WHERE state IN {active}")[0][0],
        timeout,
        "every workload completed",
        0.2,
    )


@dataclass(frozen=True)
class StoreChecks:
    """The end state against what the clients were told: each a count of what went wrong."""

    stored: int
    lost: int  # accepted, not stored
    never_accepted: int  # stored, never accepted
    duplicate_ids: int
    placed_twice: int  # workloads with more than one PLACED event
    over_capacity: tuple[str, ...]  # nodes over capacity at some moment

    def problems(self) -> list[str]:
        """What went wrong, in words (empty: nothing)."""
        out = []
        if self.duplicate_ids:
            out.append(f"{self.duplicate_ids} duplicate workload ids")
        if self.lost or self.never_accepted:
            out.append(f"{self.lost} accepted workloads lost, {self.never_accepted} never accepted")
        if self.placed_twice:
            out.append(f"{self.placed_twice} workloads placed more than once")
        out += [f"{node}: over capacity" for node in self.over_capacity]
        return out


def store_checks(
    query: Query, accepted: dict[str, str], capacity: dict[str, tuple[int, int]]
) -> StoreChecks:
    """Whether every accepted workload (all are ``SPEC``) exists exactly once and nothing else
    does, each was placed once, and no node was ever over ``capacity`` (cpu, memory) while its
    workloads ran."""
    ids = [r[0] for r in query("SELECT id FROM workloads")]
    placed = int(WorkloadState.PLACED)
    twice = query(
        f"SELECT workload_id FROM events WHERE state = {placed} "
        "GROUP BY workload_id HAVING COUNT(*) > 1"
    )
    rows = query(
        "SELECT p.node, w.placed_at, w.finished_at FROM placements p "
        "JOIN workloads w ON w.id = p.workload_id"
    )
    return StoreChecks(
        stored=len(ids),
        lost=len(set(accepted) - set(ids)),
        never_accepted=len(set(ids) - set(accepted)),
        duplicate_ids=len(ids) - len(set(ids)),
        placed_twice=len(twice),
        over_capacity=_over_capacity(rows, capacity),
    )


def _over_capacity(
    rows: Sequence[tuple[Any, ...]], capacity: dict[str, tuple[int, int]]
) -> tuple[str, ...]:
    # a sweep per node: a workload holds its node from placed_at to finished_at; at one
    # instant, what finished is given back before what is placed takes
    moments: dict[str, list[tuple[float, int, int, int]]] = defaultdict(list)
    cpu, mem = SPEC.resources.cpu_millis, SPEC.resources.memory_mib
    for node, start, end in rows:
        moments[node].append((start, 1, cpu, mem))
        moments[node].append((end if end is not None else float("inf"), 0, -cpu, -mem))
    over = []
    for node, marks in moments.items():
        held_cpu = held_mem = 0
        for _, _, dc, dm in sorted(marks):
            held_cpu, held_mem = held_cpu + dc, held_mem + dm
            if held_cpu > capacity[node][0] or held_mem > capacity[node][1]:
                over.append(node)
                break
    return tuple(sorted(over))


def store_problems(
    query: Query, accepted: dict[str, str], capacity: dict[str, tuple[int, int]]
) -> list[str]:
    """``store_checks`` in words: empty when nothing went wrong."""
    return store_checks(query, accepted, capacity).problems()


def node_capacity(port: int) -> dict[str, tuple[int, int]]:
    """Each node's (cpu millis, memory MiB), as the server on ``port`` lists them."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        sites = pb_grpc.ClusterServiceStub(channel).ListSites(
            pb.ListSitesRequest(include_nodes=True), timeout=10
        )
    return {
        n.name: (n.capacity.cpu_millis, n.capacity.memory_mib) for s in sites.sites for n in s.nodes
    }


def until(pred: Callable[[], Any], timeout: float, what: str, step: float = 0.05) -> float:
    """Wait for ``pred`` (``AssertionError`` naming ``what`` after ``timeout`` seconds); the
    seconds it took."""
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what} not within {timeout} s")
        time.sleep(step)
    return time.monotonic() - t0
