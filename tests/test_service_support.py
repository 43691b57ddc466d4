"""Helpers of the service tests (no tests here): a server on loopback, a workload mix, waiting
for the loop to settle, and an independent checker of every placement as a client sees it."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler._proto.valley.v1 import placement_pb2_grpc as pb_grpc
from scheduler.config import Valley, ValleyConfig
from scheduler.domain import Scenario
from scheduler.loop import LoopConfig

PENDING = pb.WORKLOAD_STATE_PENDING
PLACED = pb.WORKLOAD_STATE_PLACED
UNSCHEDULABLE = pb.WORKLOAD_STATE_UNSCHEDULABLE
CANCELLED = pb.WORKLOAD_STATE_CANCELLED
COMPLETED = pb.WORKLOAD_STATE_COMPLETED


@dataclass
class Client:
    channel: grpc.Channel
    placement: pb_grpc.PlacementServiceStub
    cluster: pb_grpc.ClusterServiceStub

    @classmethod
    def connect(cls, port: int) -> Client:
        ch = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(ch).result(timeout=20)
        return cls(ch, pb_grpc.PlacementServiceStub(ch), pb_grpc.ClusterServiceStub(ch))

    def submit(self, specs: Sequence[pb.WorkloadSpec], request_id: str = "") -> list[pb.Workload]:
        resp = self.placement.SubmitWorkloads(
            pb.SubmitWorkloadsRequest(request_id=request_id, workloads=specs), timeout=30
        )
        return list(resp.workloads)

    def get(self, wid: str) -> pb.Workload:
        return self.placement.GetWorkload(pb.GetWorkloadRequest(id=wid), timeout=10)

    def all_workloads(self, tenant: str = "", states: Sequence[int] = ()) -> list[pb.Workload]:
        out: list[pb.Workload] = []
        token = ""
        while True:
            page = self.placement.ListWorkloads(
                pb.ListWorkloadsRequest(
                    tenant=tenant, states=cast(Any, states), page_size=1000, page_token=token
                ),
                timeout=30,
            )
            out += page.workloads
            token = page.next_page_token
            if not token:
                return out

    def close(self) -> None:
        self.channel.close()


@contextlib.contextmanager
def serve(
    scenario: Scenario, directory: Path, *, store_url: str = "", window_s: float = 0.01
) -> Iterator[tuple[Valley, Client]]:
    config = ValleyConfig(
        grpc_address="127.0.0.1:0",
        metrics_address=None,
        store_url=store_url or f"sqlite:///{directory}/valley.db",
        loop=LoopConfig(batch_window_s=window_s),
    )
    valley = Valley(config, scenario=scenario).start()
    client = Client.connect(valley.port)
    try:
        yield valley, client
    finally:
        client.close()
        valley.stop(grace=1.0)


def until(pred: object, timeout: float = 60.0, message: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not pred():  # type: ignore[operator]
        if time.monotonic() > end:
            raise AssertionError(f"{message} not reached within {timeout} s")
        time.sleep(0.02)


def settled(w: pb.Workload) -> bool:
    """Tried at least once: placed, final, or pending with a reason."""
    return w.state != PENDING or bool(w.reason)


def wait_settled(client: Client, timeout: float = 90.0) -> list[pb.Workload]:
    out: list[pb.Workload] = []

    def done() -> bool:
        nonlocal out
        out = client.all_workloads()
        return all(settled(w) for w in out)

    until(done, timeout, "every workload tried")
    return out


def consistent_view(
    client: Client, timeout: float = 60.0
) -> tuple[list[pb.Workload], pb.ListSitesResponse]:
    """The workloads and ListSites(include_nodes) as of one moment. Settled is not still: later
    cycles may preempt or place what waits, and the loop commits to the store before it shows
    the new allocation. So read workloads, sites, workloads, sites, and take the pair only when
    nothing changed between the reads."""
    view: tuple[list[pb.Workload], pb.ListSitesResponse] | None = None

    def placements(ws: list[pb.Workload]) -> dict[str, tuple[object, ...]]:
        return {w.id: (w.state, *(p.SerializeToString() for p in w.placements)) for w in ws}

    def still() -> bool:
        nonlocal view
        request = pb.ListSitesRequest(include_nodes=True)
        before = client.all_workloads()
        sites = client.cluster.ListSites(request, timeout=30)
        after = client.all_workloads()
        again = client.cluster.ListSites(request, timeout=30)
        if placements(before) != placements(after) or sites != again:
            return False
        view = (after, sites)
        return True

    until(still, timeout, "a still moment (workloads and sites read alike twice)")
    assert view is not None
    return view


def cpu_spec(cores: float, tenant: str = "acme", **kw: object) -> pb.WorkloadSpec:
    return pb.WorkloadSpec(
        tenant=tenant,
        name=kw.pop("name", "w"),  # type: ignore[arg-type]
        resources=pb.Resources(cpu_millis=int(cores * 1000), memory_mib=1024),
        **kw,  # type: ignore[arg-type]
    )


def mixed_specs(rng: random.Random, n: int, scenario: Scenario) -> list[pb.WorkloadSpec]:
    """Services with SLOs, batch jobs, whole and fractional GPUs, GANG and SPREAD, residency,
    GPU models, and a few that can never fit."""
    sites = list(scenario.site_names)
    origins = list(scenario.origins)
    models = sorted({p.gpu_model for p in scenario.pools if p.gpu_model})
    out = []
    for i in range(n):
        kind = rng.random()
        spec = pb.WorkloadSpec(tenant=f"tenant-{i % 5}", name=f"w{i}", priority=rng.randint(0, 3))
        if kind < 0.35:  # service with an SLO
            spec.kind = pb.WORKLOAD_KIND_SERVICE
            spec.resources.CopyFrom(
                pb.Resources(cpu_millis=rng.choice([500, 1000, 2000, 4000]), memory_mib=2048)
            )
            spec.replicas = rng.randint(1, 3)
            spec.origin = rng.choice(origins)
            spec.max_latency_ms = rng.choice([1.5, 5.0, 0.0])
        elif kind < 0.6:  # batch
            spec.kind = pb.WORKLOAD_KIND_BATCH
            spec.resources.CopyFrom(
                pb.Resources(cpu_millis=rng.choice([4000, 8000, 16000]), memory_mib=16384)
            )
            spec.replicas = rng.randint(1, 2)
        elif kind < 0.7:  # fractional GPU
            spec.resources.CopyFrom(
                pb.Resources(
                    cpu_millis=2000, memory_mib=8192, gpu_millis=rng.choice([250, 500, 700])
                )
            )
            if rng.random() < 0.5:
                spec.gpu_models.append(rng.choice(models))
        elif kind < 0.78:  # whole GPUs
            spec.resources.CopyFrom(
                pb.Resources(cpu_millis=8000, memory_mib=65536, gpus=rng.choice([1, 2, 4]))
            )
            spec.replicas = rng.randint(1, 2)
        elif kind < 0.86:  # gang
            spec.resources.CopyFrom(pb.Resources(cpu_millis=2000, memory_mib=4096))
            spec.replicas = rng.randint(2, 6)
            spec.topology = pb.TOPOLOGY_GANG
        elif kind < 0.93:  # spread
            spec.resources.CopyFrom(pb.Resources(cpu_millis=1000, memory_mib=2048))
            spec.replicas = rng.randint(2, 5)
            spec.topology = pb.TOPOLOGY_SPREAD
            spec.min_sites = 2
        elif kind < 0.97:  # residency
            spec.resources.CopyFrom(pb.Resources(cpu_millis=1000, memory_mib=2048))
            spec.allowed_sites.append(rng.choice(sites))
            spec.replicas = rng.randint(1, 3)
        else:  # never fits: an SLO no site meets, or larger than every node
            if rng.random() < 0.5:
                spec.resources.CopyFrom(pb.Resources(cpu_millis=1000, memory_mib=1024))
                spec.origin = origins[0]
                spec.max_latency_ms = 0.01
            else:
                spec.resources.CopyFrom(pb.Resources(cpu_millis=10_000_000, memory_mib=1024))
        out.append(spec)
    return out


def placement_violations(
    workloads: Sequence[pb.Workload], sites: pb.ListSitesResponse
) -> list[str]:
    """Every rule of API.md a placement could break, checked from what a client sees:
    node capacity (per physical GPU for shares), SLO, residency, GPU model, GANG, SPREAD, and
    that ListSites' allocation is exactly the sum of the PLACED workloads."""
    problems: list[str] = []
    nodes = {n.name: (s, n) for s in sites.sites for n in s.nodes}
    cpu: dict[str, int] = defaultdict(int)
    mem: dict[str, int] = defaultdict(int)
    gpu_share: dict[tuple[str, int], int] = defaultdict(int)
    for w in workloads:
        spec = w.spec
        if w.state in (PENDING, UNSCHEDULABLE):
            if not w.reason:
                problems.append(f"{w.id}: {pb.WorkloadState.Name(w.state)} without a reason")
            if w.placements:
                problems.append(f"{w.id}: not placed but has placements")
            continue
        if w.state != PLACED:
            continue
        n = spec.replicas or 1
        if [p.replica for p in w.placements] != list(range(n)):
            problems.append(f"{w.id}: replicas {[p.replica for p in w.placements]} != 0..{n - 1}")
        r = spec.resources
        used_sites = set()
        for p in w.placements:
            if p.node not in nodes:
                problems.append(f"{w.id}: unknown node {p.node}")
                continue
            site, node = nodes[p.node]
            used_sites.add(site.name)
            if p.site != site.name:
                problems.append(f"{w.id}: placement says site {p.site}, node is in {site.name}")
            cpu[p.node] += r.cpu_millis
            mem[p.node] += r.memory_mib
            if r.gpus:
                if len(p.gpu_indices) != r.gpus:
                    problems.append(f"{w.id}: {r.gpus} GPUs asked, indices {list(p.gpu_indices)}")
                for g in p.gpu_indices:
                    gpu_share[(p.node, g)] += 1000
            elif r.gpu_millis:
                if len(p.gpu_indices) != 1:
                    problems.append(f"{w.id}: a GPU share needs one GPU index")
                for g in p.gpu_indices:
                    gpu_share[(p.node, g)] += r.gpu_millis
            for g in p.gpu_indices:
                if not 0 <= g < node.capacity.gpus:
                    problems.append(f"{w.id}: GPU index {g} on {p.node} with {node.capacity.gpus}")
            if (
                (r.gpus or r.gpu_millis)
                and spec.gpu_models
                and node.gpu_model not in spec.gpu_models
            ):
                problems.append(
                    f"{w.id}: GPU model {node.gpu_model} not in {list(spec.gpu_models)}"
                )
            if not (r.gpus or r.gpu_millis) and node.capacity.gpus:
                pass  # CPU work on GPU nodes is a policy choice, not a rule of the API
            if spec.allowed_sites and site.name not in spec.allowed_sites:
                problems.append(f"{w.id}: site {site.name} not in {list(spec.allowed_sites)}")
            if spec.origin:
                rtt = site.latency_ms[spec.origin]
                if abs(p.latency_ms - rtt) > 1e-9:
                    problems.append(f"{w.id}: latency {p.latency_ms} != RTT {rtt}")
                if spec.max_latency_ms > 0 and rtt > spec.max_latency_ms:
                    problems.append(f"{w.id}: RTT {rtt} > SLO {spec.max_latency_ms} at {site.name}")
        if spec.topology == pb.TOPOLOGY_GANG and len(used_sites) > 1:
            problems.append(f"{w.id}: GANG over {sorted(used_sites)}")
        if spec.topology == pb.TOPOLOGY_SPREAD and len(used_sites) < spec.min_sites:
            problems.append(f"{w.id}: SPREAD over {len(used_sites)} < {spec.min_sites} sites")
    for name, (_, node) in nodes.items():
        if cpu[name] > node.capacity.cpu_millis or mem[name] > node.capacity.memory_mib:
            problems.append(f"{name}: over capacity ({cpu[name]} cpu, {mem[name]} memory)")
        if cpu[name] != node.allocated.cpu_millis or mem[name] != node.allocated.memory_mib:
            problems.append(
                f"{name}: allocated {node.allocated.cpu_millis}/{node.allocated.memory_mib} "
                f"but placements sum to {cpu[name]}/{mem[name]}"
            )
        shares = {g: v for (n, g), v in gpu_share.items() if n == name}
        if any(v > 1000 for v in shares.values()):
            problems.append(f"{name}: a GPU over 1000 millis: {shares}")
        if sum(shares.values()) != node.allocated.gpu_millis or len(shares) != node.allocated.gpus:
            problems.append(
                f"{name}: allocated GPUs {node.allocated.gpus}/{node.allocated.gpu_millis} but "
                f"placements hold {len(shares)}/{sum(shares.values())}"
            )
    return problems


class Watching:
    """Every event of a ``WatchWorkloads`` stream, collected by a background thread, from
    the time the stream is open (``initial_metadata``) until ``stop``."""

    def __init__(self, client: Client, timeout: float = 60.0) -> None:
        self.seen: list[pb.WorkloadEvent] = []
        self._stream: Any = client.placement.WatchWorkloads(
            pb.WatchWorkloadsRequest(), timeout=timeout
        )
        self._stream.initial_metadata()
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        try:
            for e in self._stream:
                self.seen.append(e)
        except grpc.RpcError:
            pass

    def stop(self) -> None:
        self._stream.cancel()
        self._thread.join(5)
