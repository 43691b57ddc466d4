"""A no-op server of Valley's proto: the ceiling of the RPC path for ``valley bench service``.

SubmitWorkloads assigns ids and returns at once, storing nothing; every watcher immediately gets
a PENDING and a PLACED event per workload (placed nowhere), so the same load generator measures
"submit to placed" against both servers. Everything else answers at once with empty data.

Run: ``python -m scheduler.bench.noop_server --address 127.0.0.1:0`` (prints the bound port).
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import signal
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import click
import grpc

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler._proto.valley.v1 import placement_pb2_grpc as pb_grpc


class NoopPlacement(pb_grpc.PlacementServiceServicer):
    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self._watchers: list[queue.SimpleQueue[list[pb.WorkloadEvent] | None]] = []

    def SubmitWorkloads(
        self, request: pb.SubmitWorkloadsRequest, context: grpc.ServicerContext
    ) -> pb.SubmitWorkloadsResponse:
        out = pb.SubmitWorkloadsResponse()
        with self._lock:
            ids = [f"noop-{next(self._ids)}" for _ in request.workloads]
            watchers = list(self._watchers)
        for wid, spec in zip(ids, request.workloads, strict=True):
            out.workloads.add(id=wid, spec=spec, state=pb.WORKLOAD_STATE_PENDING)
        if watchers:
            events = []
            for w in out.workloads:
                placed = pb.Workload(
                    id=w.id,
                    spec=pb.WorkloadSpec(tenant=w.spec.tenant),
                    state=pb.WORKLOAD_STATE_PLACED,
                )
                events.append(pb.WorkloadEvent(workload=w, sequence=next(self._seq)))
                events.append(
                    pb.WorkloadEvent(
                        workload=placed,
                        previous_state=pb.WORKLOAD_STATE_PENDING,
                        sequence=next(self._seq),
                    )
                )
            for q in watchers:
                q.put(events)
        return out

    def GetWorkload(
        self, request: pb.GetWorkloadRequest, context: grpc.ServicerContext
    ) -> pb.Workload:
        return pb.Workload(id=request.id, state=pb.WORKLOAD_STATE_PLACED)

    def ListWorkloads(
        self, request: pb.ListWorkloadsRequest, context: grpc.ServicerContext
    ) -> pb.ListWorkloadsResponse:
        return pb.ListWorkloadsResponse()

    def CancelWorkload(
        self, request: pb.CancelWorkloadRequest, context: grpc.ServicerContext
    ) -> pb.Workload:
        return pb.Workload(id=request.id, state=pb.WORKLOAD_STATE_CANCELLED)

    def ExplainWorkload(
        self, request: pb.ExplainWorkloadRequest, context: grpc.ServicerContext
    ) -> pb.Explanation:
        return pb.Explanation(summary="noop")

    def WatchWorkloads(
        self, request: pb.WatchWorkloadsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WorkloadEvent]:
        for events in self._watch(request, context):
            yield from events

    def WatchWorkloadBatches(
        self, request: pb.WatchWorkloadsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WorkloadEventBatch]:
        for events in self._watch(request, context):
            yield pb.WorkloadEventBatch(events=events)

    def _watch(
        self, request: pb.WatchWorkloadsRequest, context: grpc.ServicerContext
    ) -> Iterator[list[pb.WorkloadEvent]]:
        """The selected events of every submission made since the last group (as Valley's
        watch streams take them from their subscription)."""
        q: queue.SimpleQueue[list[pb.WorkloadEvent] | None] = queue.SimpleQueue()
        with self._lock:
            self._watchers.append(q)
        context.add_callback(lambda: q.put(None))
        context.send_initial_metadata(())
        tenant = request.tenant
        states = frozenset(request.states)
        try:
            while context.is_active():
                batch = q.get()
                if batch is None:
                    return
                with contextlib.suppress(queue.Empty):
                    while len(batch) < 1000:
                        more = q.get_nowait()
                        if more is None:
                            return
                        batch = batch + more
                if tenant or states:
                    batch = [
                        e
                        for e in batch
                        if (not tenant or e.workload.spec.tenant == tenant)
                        and (not states or e.workload.state in states)
                    ]
                if batch:
                    yield batch
        finally:
            with self._lock:
                self._watchers.remove(q)

    def close(self) -> None:
        with self._lock:
            for q in self._watchers:
                q.put(None)


class NoopCluster(pb_grpc.ClusterServiceServicer):
    def ListSites(
        self, request: pb.ListSitesRequest, context: grpc.ServicerContext
    ) -> pb.ListSitesResponse:
        return pb.ListSitesResponse()


def create_noop_server(
    address: str, max_workers: int = 32
) -> tuple[grpc.Server, int, NoopPlacement]:
    server = grpc.server(
        ThreadPoolExecutor(max_workers=max_workers), options=[("grpc.so_reuseport", 0)]
    )
    placement = NoopPlacement()
    pb_grpc.add_PlacementServiceServicer_to_server(placement, server)
    pb_grpc.add_ClusterServiceServicer_to_server(NoopCluster(), server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    return server, port, placement


@click.command()
@click.option("--address", default="127.0.0.1:0", show_default=True)
def main(address: str) -> None:
    server, port, placement = create_noop_server(address)
    server.start()
    host = address.rpartition(":")[0]
    click.echo(f"noop: serving gRPC on {host}:{port}", err=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    placement.close()
    server.stop(1).wait()
    sys.exit(0)


if __name__ == "__main__":
    main()
