"""What the failover and crash tests share: servers started and killed, continuous submissions
that never give up on a request, watchers, and the checks of the end state against the store."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler._proto.valley.v1 import placement_pb2_grpc as pb_grpc
from scheduler.domain import WorkloadState
from tests.test_service_process import Server, valley_serve
from tests.test_service_support import Client

Query = Callable[[str], list[tuple[Any, ...]]]
SPEC = pb.WorkloadSpec(
    tenant="t", name="f", resources=pb.Resources(cpu_millis=250, memory_mib=256), duration_s=1
)


class Servers:
    """``valley serve`` processes on one store, started and killed at will."""

    def __init__(self, tmp_path: Path, store: str, stack: contextlib.ExitStack) -> None:
        self._tmp = tmp_path
        self._store = store
        self._stack = stack
        self.live: list[Server] = []

    def start(self) -> Server:
        server = self._stack.enter_context(valley_serve(self._tmp, self._store))
        self.live.append(server)
        return server

    def kill(self, server: Server) -> None:
        self.live.remove(server)
        server.proc.kill()
        server.proc.wait(timeout=30)

    def ports(self) -> list[int]:
        return [s.port for s in self.live]


class Submitters:
    """``n`` threads submitting two workloads at a time to the live servers in turn; a request
    that fails is sent again, with its request_id, until one server accepts it."""

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
    active = f"({int(WorkloadState.PENDING)}, {int(WorkloadState.PLACED)})"
    end = time.monotonic() + timeout
    while query(f"SELECT COUNT(*) FROM workloads WHERE state IN {active}")[0][0]:
        if time.monotonic() > end:
            raise AssertionError("workloads still pending or placed after the run")
        time.sleep(0.2)


def store_problems(
    query: Query, accepted: dict[str, str], capacity: dict[str, tuple[int, int]]
) -> list[str]:
    """Every accepted workload (all are ``SPEC``) exists exactly once and nothing else does,
    each was placed once, and no node was ever over ``capacity`` (cpu, memory) while its
    workloads ran."""
    problems: list[str] = []
    ids = [r[0] for r in query("SELECT id FROM workloads")]
    if len(ids) != len(set(ids)):
        problems.append("duplicate workload ids")
    if set(ids) != set(accepted):
        lost = set(accepted) - set(ids)
        extra = set(ids) - set(accepted)
        problems.append(f"{len(lost)} accepted workloads lost, {len(extra)} never accepted")
    placed = int(WorkloadState.PLACED)
    twice = query(
        f"SELECT workload_id FROM events WHERE state = {placed} "
        "GROUP BY workload_id HAVING COUNT(*) > 1"
    )
    if twice:
        problems.append(f"{len(twice)} workloads placed more than once")
    rows = query(
        "SELECT p.node, w.placed_at, w.finished_at FROM placements p "
        "JOIN workloads w ON w.id = p.workload_id"
    )
    # a sweep per node: a workload holds its node from placed_at to finished_at; at one
    # instant, what finished is given back before what is placed takes
    moments: dict[str, list[tuple[float, int, int, int]]] = defaultdict(list)
    for node, start, end in rows:
        cpu, mem = SPEC.resources.cpu_millis, SPEC.resources.memory_mib
        moments[node].append((start, 1, cpu, mem))
        moments[node].append((end if end is not None else float("inf"), 0, -cpu, -mem))
    for node, marks in moments.items():
        cpu = mem = 0
        for _, _, dc, dm in sorted(marks):
            cpu, mem = cpu + dc, mem + dm
            if cpu > capacity[node][0] or mem > capacity[node][1]:
                problems.append(f"{node}: over capacity ({cpu} cpu, {mem} MiB)")
                break
    return problems


def node_capacity(port: int) -> dict[str, tuple[int, int]]:
    client = Client.connect(port)
    try:
        sites = client.cluster.ListSites(pb.ListSitesRequest(include_nodes=True), timeout=10)
    finally:
        client.close()
    return {
        n.name: (n.capacity.cpu_millis, n.capacity.memory_mib) for s in sites.sites for n in s.nodes
    }


def until(pred: Callable[[], Any], timeout: float, what: str, step: float = 0.05) -> float:
    """Wait for ``pred``; the seconds it took."""
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what} not within {timeout} s")
        time.sleep(step)
    return time.monotonic() - t0


@contextlib.contextmanager
def watching(ports: Sequence[int]) -> Iterator[dict[int, Watcher]]:
    watchers = {p: Watcher(p) for p in ports}
    try:
        yield watchers
    finally:
        for w in watchers.values():
            w.close()
