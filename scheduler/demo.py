"""The workload mix of ``valley demo`` (the command: ``scheduler.cli.demo``): a continuous,
realistic Zhongguancun workload mix for a live server.

The mix follows SCENARIO.md, by share of requested cores:

- interactive services (20%): SLO 2 ms from ``zhongguancun``, so only E-Town qualifies;
- regional services (30%): SLO 5 ms, both sites qualify, some spread over two sites;
- batch and analytics (40%): no SLO, most with ``duration_s`` so they complete, some with a
  deadline;
- GPU work (10%, most of the GPUs): inference services on fractional GPUs and training jobs on
  whole GPUs (gang-scheduled when they have several replicas).

Request shapes come from the openb trace (Alibaba GPU cluster trace 2023,
``openb_pod_list_default``): the most frequent shapes are embedded below with their counts as
weights; ``--trace FILE`` draws from a whole pod list instead. A service replica is a trace CPU
pod scaled down by ``SERVICE_SCALE`` (services run many small replicas; the trace's CPU/memory
ratio is kept).
Services run for a bounded time as well (short-lived deployments), so that a long demo reaches a
steady state instead of filling the cluster, and a few workloads are cancelled by their tenant.
A small share of requests is misconfigured on purpose (an SLO no site can meet): real users do
that, and it keeps the "unschedulable" panels honest.

The demo speaks only gRPC (the generated stubs); it knows nothing of the server's internals.
"""

from __future__ import annotations

import csv
import random
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import click
import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler._proto.valley.v1 import placement_pb2_grpc as pb_grpc

ORIGIN = "zhongguancun"
# Zhongguancun tenants (illustrative firm kinds, not real companies).
TENANTS = (
    "zgc-search",
    "zgc-maps",
    "zgc-video",
    "zgc-fintech",
    "zgc-ecommerce",
    "zgc-ai-lab",
    "haidian-health",
    "haidian-edu",
)
SERVICE_SCALE = 8  # a service replica is a trace CPU pod divided by this

# (cpu_milli, memory_mib, num_gpu, gpu_milli, count) from openb_pod_list_default.csv: the most
# frequent shapes of each kind. num_gpu = 1 with gpu_milli < 1000 is a share of one GPU;
# num_gpu = 1 with gpu_milli = 1000, or num_gpu > 1, are whole GPUs.
OPENB_CPU = (
    (12500, 57344, 0, 0, 364),
    (32000, 49152, 0, 0, 284),
    (8000, 30517, 0, 0, 163),
    (15400, 51200, 0, 0, 120),
    (16500, 51200, 0, 0, 95),
    (11400, 57344, 0, 0, 11),
    (8000, 15625, 0, 0, 11),
    (16000, 31250, 0, 0, 8),
)
OPENB_GPU_SHARE = (
    (3152, 5600, 1, 810, 1047),
    (11908, 47104, 1, 470, 388),
    (8000, 30517, 1, 470, 360),
    (11908, 47104, 1, 650, 237),
    (4000, 22888, 1, 320, 111),
    (4000, 30517, 1, 230, 84),
    (4000, 15258, 1, 320, 78),
    (3152, 5600, 1, 590, 75),
    (8000, 30517, 1, 320, 72),
    (4152, 10600, 1, 550, 72),
    (4000, 15258, 1, 160, 53),
    (6000, 6144, 1, 460, 51),
)
OPENB_GPU_WHOLE = (
    (11300, 49152, 1, 1000, 857),
    (11400, 48128, 1, 1000, 534),
    (3152, 5600, 1, 1000, 470),
    (18708, 64512, 1, 1000, 255),
    (9810, 41560, 1, 1000, 195),
    (12000, 24576, 1, 1000, 158),
    (15700, 58368, 1, 1000, 158),
    (11908, 47104, 1, 1000, 153),
    (16000, 32768, 1, 1000, 108),
    (8000, 16384, 1, 1000, 104),
    (88000, 327680, 8, 1000, 18),
    (64200, 263168, 8, 1000, 18),
    (32200, 132096, 4, 1000, 9),
    (16200, 66560, 2, 1000, 7),
)


@dataclass(frozen=True, slots=True)
class Shape:
    """One replica's request, as the API takes it."""

    cpu_millis: int
    memory_mib: int
    gpus: int = 0  # whole GPUs
    gpu_millis: int = 0  # a share of one GPU (1..999)

    @classmethod
    def from_openb(cls, cpu: int, mem: int, num_gpu: int, gpu_milli: int) -> Shape:
        if num_gpu == 1 and 0 < gpu_milli < 1000:
            return cls(cpu, mem, 0, gpu_milli)
        return cls(cpu, mem, num_gpu, 0)

    def scaled_down(self, k: int) -> Shape:
        return Shape(max(100, self.cpu_millis // k), max(128, self.memory_mib // k))

    def proto(self) -> pb.Resources:
        return pb.Resources(
            cpu_millis=self.cpu_millis,
            memory_mib=self.memory_mib,
            gpus=self.gpus,
            gpu_millis=self.gpu_millis,
        )


@dataclass(frozen=True)
class Shapes:
    """Weighted request shapes: CPU-only pods, GPU shares, whole GPUs."""

    cpu: tuple[tuple[Shape, int], ...]
    gpu_share: tuple[tuple[Shape, int], ...]
    gpu_whole: tuple[tuple[Shape, int], ...]

    @classmethod
    def embedded(cls) -> Shapes:
        def conv(rows: Sequence[tuple[int, int, int, int, int]]) -> tuple[tuple[Shape, int], ...]:
            return tuple((Shape.from_openb(c, m, g, gm), n) for c, m, g, gm, n in rows)

        return cls(conv(OPENB_CPU), conv(OPENB_GPU_SHARE), conv(OPENB_GPU_WHOLE))

    @classmethod
    def from_trace(cls, path: str | Path) -> Shapes:
        """Every distinct shape of an openb pod list, weighted by how often it occurs."""
        counts: Counter[Shape] = Counter()
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                counts[
                    Shape.from_openb(
                        int(row["cpu_milli"]),
                        int(row["memory_mib"]),
                        int(row["num_gpu"]),
                        int(row["gpu_milli"]),
                    )
                ] += 1
        cpu = tuple((s, n) for s, n in counts.items() if not s.gpus and not s.gpu_millis)
        share = tuple((s, n) for s, n in counts.items() if s.gpu_millis)
        whole = tuple((s, n) for s, n in counts.items() if s.gpus)
        if not cpu or not share or not whole:
            raise click.BadParameter(
                f"{path}: needs CPU-only, GPU-share and whole-GPU pods", param_hint="--trace"
            )
        return cls(cpu, share, whole)


def _pick(rng: random.Random, weighted: Sequence[tuple[Shape, int]]) -> Shape:
    shapes = [s for s, _ in weighted]
    return rng.choices(shapes, weights=[n for _, n in weighted], k=1)[0]


def _mean_cpu(weighted: Sequence[tuple[Shape, int]], scale: int = 1) -> float:
    total = sum(n for _, n in weighted)
    return sum(s.cpu_millis / scale * n for s, n in weighted) / total


# Share of requested cores per category (SCENARIO.md) and mean replicas per workload, used to
# turn core shares into the probability of drawing each category.
CORE_SHARES = {"interactive": 0.20, "regional": 0.30, "batch": 0.40, "gpu": 0.10}
MEAN_REPLICAS = {"interactive": 4.0, "regional": 5.0, "batch": 5.5, "gpu": 1.5}


@dataclass
class Mix:
    """Draws workload specs of the Zhongguancun mix."""

    rng: random.Random
    shapes: Shapes = field(default_factory=Shapes.embedded)
    misconfigured: float = 0.01  # share of requests with an SLO no site can meet
    counter: int = 0

    def __post_init__(self) -> None:
        mean_cores = {
            "interactive": _mean_cpu(self.shapes.cpu, SERVICE_SCALE),
            "regional": _mean_cpu(self.shapes.cpu, SERVICE_SCALE),
            "batch": _mean_cpu(self.shapes.cpu),
            "gpu": (_mean_cpu(self.shapes.gpu_share) + _mean_cpu(self.shapes.gpu_whole)) / 2,
        }
        raw = {c: CORE_SHARES[c] / (mean_cores[c] * MEAN_REPLICAS[c]) for c in CORE_SHARES}
        total = sum(raw.values())
        self.category_weights = {c: w / total for c, w in raw.items()}

    def draw(self) -> tuple[str, pb.WorkloadSpec]:
        """One workload: (category, spec)."""
        self.counter += 1
        cats = list(self.category_weights)
        cat = self.rng.choices(cats, weights=[self.category_weights[c] for c in cats], k=1)[0]
        tenant = self.rng.choice(TENANTS)
        make: dict[str, Callable[[str], pb.WorkloadSpec]] = {
            "interactive": self._interactive,
            "regional": self._regional,
            "batch": self._batch,
            "gpu": self._gpu,
        }
        spec = make[cat](tenant)
        if self.rng.random() < self.misconfigured:
            # an SLO below the RTT of every site: accepted, then UNSCHEDULABLE (reason slo)
            spec.origin = ORIGIN
            spec.max_latency_ms = 0.1
            cat = "misconfigured"
        return cat, spec

    def _name(self, prefix: str) -> str:
        return f"{prefix}-{self.counter:06d}"

    def _interactive(self, tenant: str) -> pb.WorkloadSpec:
        return pb.WorkloadSpec(
            tenant=tenant,
            name=self._name("api"),
            resources=_pick(self.rng, self.shapes.cpu).scaled_down(SERVICE_SCALE).proto(),
            replicas=self.rng.randint(2, 6),
            origin=ORIGIN,
            max_latency_ms=2.0,
            priority=10,
            kind=pb.WORKLOAD_KIND_SERVICE,
            duration_s=self.rng.randint(300, 1800),
            labels={"tier": "interactive"},
        )

    def _regional(self, tenant: str) -> pb.WorkloadSpec:
        replicas = self.rng.randint(2, 8)
        spread = self.rng.random() < 0.3
        return pb.WorkloadSpec(
            tenant=tenant,
            name=self._name("svc"),
            resources=_pick(self.rng, self.shapes.cpu).scaled_down(SERVICE_SCALE).proto(),
            replicas=replicas,
            origin=ORIGIN,
            max_latency_ms=5.0,
            priority=5,
            kind=pb.WORKLOAD_KIND_SERVICE,
            duration_s=self.rng.randint(300, 1800),
            topology=pb.TOPOLOGY_SPREAD if spread else pb.TOPOLOGY_UNSPECIFIED,
            min_sites=2 if spread else 0,
            labels={"tier": "regional"},
        )

    def _batch(self, tenant: str) -> pb.WorkloadSpec:
        spec = pb.WorkloadSpec(
            tenant=tenant,
            name=self._name("etl"),
            resources=_pick(self.rng, self.shapes.cpu).proto(),
            replicas=self.rng.randint(1, 10),
            priority=0,
            kind=pb.WORKLOAD_KIND_BATCH,
            labels={"tier": "batch"},
        )
        if self.rng.random() < 0.8:
            spec.duration_s = self.rng.randint(30, 300)
        if self.rng.random() < 0.3:
            deadline = Timestamp()
            deadline.FromSeconds(int(time.time()) + self.rng.randint(3600, 6 * 3600))
            spec.deadline.CopyFrom(deadline)
        return spec

    def _gpu(self, tenant: str) -> pb.WorkloadSpec:
        if self.rng.random() < 0.5:
            # inference: a service on a share of one GPU, near its users
            return pb.WorkloadSpec(
                tenant=tenant,
                name=self._name("infer"),
                resources=_pick(self.rng, self.shapes.gpu_share).proto(),
                replicas=self.rng.randint(1, 3),
                origin=ORIGIN,
                max_latency_ms=5.0,
                priority=5,
                kind=pb.WORKLOAD_KIND_SERVICE,
                duration_s=self.rng.randint(300, 1800),
                labels={"tier": "gpu-inference"},
            )
        shape = _pick(self.rng, self.shapes.gpu_whole)
        replicas = 1 if shape.gpus >= 4 or self.rng.random() < 0.6 else 2
        return pb.WorkloadSpec(
            tenant=tenant,
            name=self._name("train"),
            resources=shape.proto(),
            replicas=replicas,
            priority=1,
            kind=pb.WORKLOAD_KIND_BATCH,
            duration_s=self.rng.randint(60, 600),
            topology=pb.TOPOLOGY_GANG if replicas > 1 else pb.TOPOLOGY_UNSPECIFIED,
            gpu_models=["H800"] if self.rng.random() < 0.3 else [],
            labels={"tier": "gpu-training"},
        )


@dataclass
class DemoStats:
    submitted: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    cancelled: int = 0
    cancel_refused: int = 0  # already completed or unschedulable: FAILED_PRECONDITION
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.submitted.values())

    def summary(self) -> str:
        mix = ", ".join(f"{k} {v}" for k, v in sorted(self.submitted.items()))
        errors = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())) or "none"
        return (
            f"submitted {self.total} workloads in {self.requests} requests ({mix}); "
            f"cancelled {self.cancelled} (refused {self.cancel_refused}); errors: {errors}"
        )


class DemoLoad:
    """Submits the mix at ``rate`` workloads per second in batches every ``interval`` seconds,
    and cancels about ``cancel_fraction`` of them a few seconds after submission."""

    def __init__(
        self,
        channel: grpc.Channel,
        *,
        rate: float,
        interval: float = 0.5,
        cancel_fraction: float = 0.05,
        cancel_after_s: float = 3.0,
        seed: int = 0,
        shapes: Shapes | None = None,
        misconfigured: float = 0.01,
        rpc_timeout_s: float = 10.0,
    ) -> None:
        self.stub = pb_grpc.PlacementServiceStub(channel)
        self.rate = rate
        self.interval = interval
        self.cancel_fraction = cancel_fraction
        self.cancel_after_s = cancel_after_s
        self.rng = random.Random(seed)
        self.mix = Mix(self.rng, shapes or Shapes.embedded(), misconfigured)
        self.timeout = rpc_timeout_s
        self.stats = DemoStats()
        self._to_cancel: deque[tuple[float, str]] = deque()
        self._carry = 0.0

    def step(self, now: float) -> None:
        """One batch: submit what the rate allows since the last step, then due cancellations."""
        self._carry += self.rate * self.interval
        n = int(self._carry)
        self._carry -= n
        if n:
            self._submit(n, now)
        while self._to_cancel and self._to_cancel[0][0] <= now:
            _, wid = self._to_cancel.popleft()
            self._cancel(wid)

    def _submit(self, n: int, now: float) -> None:
        drawn = [self.mix.draw() for _ in range(n)]
        request = pb.SubmitWorkloadsRequest(
            request_id=str(uuid.UUID(int=self.rng.getrandbits(128))),
            workloads=[spec for _, spec in drawn],
        )
        response = None
        for attempt in range(2):
            try:
                response = self.stub.SubmitWorkloads(request, timeout=self.timeout)
                break
            except grpc.RpcError as e:
                code = e.code() if isinstance(e, grpc.Call) else None
                if code == grpc.StatusCode.UNAVAILABLE and attempt == 0:
                    time.sleep(0.2)  # same request_id: a retry never submits twice
                    continue
                self.stats.errors[_code_name(code)] += 1
                return
        if response is None:
            return
        self.stats.requests += 1
        for (cat, _), workload in zip(drawn, response.workloads, strict=False):
            self.stats.submitted[cat] += 1
            if cat != "misconfigured" and self.rng.random() < self.cancel_fraction:
                delay = self.cancel_after_s * (0.5 + self.rng.random())
                self._to_cancel.append((now + delay, workload.id))

    def _cancel(self, workload_id: str) -> None:
        try:
            self.stub.CancelWorkload(pb.CancelWorkloadRequest(id=workload_id), timeout=self.timeout)
            self.stats.cancelled += 1
        except grpc.RpcError as e:
            code = e.code() if isinstance(e, grpc.Call) else None
            if code == grpc.StatusCode.FAILED_PRECONDITION:
                self.stats.cancel_refused += 1
            else:
                self.stats.errors[_code_name(code)] += 1

    def run(
        self,
        duration_s: float,
        stop: threading.Event,
        report: Callable[[str], None] | None = None,
        report_every_s: float = 10.0,
    ) -> DemoStats:
        """Run until ``duration_s`` passes (0 = until ``stop`` is set)."""
        start = time.monotonic()
        next_step = start
        next_report = start + report_every_s
        while not stop.is_set():
            now = time.monotonic()
            if duration_s and now - start >= duration_s:
                break
            self.step(now)
            if report is not None and now >= next_report:
                report(f"[{now - start:6.0f} s] {self.stats.summary()}")
                next_report += report_every_s
            next_step += self.interval
            stop.wait(max(0.0, next_step - time.monotonic()))
        return self.stats


def _code_name(code: grpc.StatusCode | None) -> str:
    return "UNKNOWN" if code is None else code.name
