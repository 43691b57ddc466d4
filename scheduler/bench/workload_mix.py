"""A Zhongguancun workload mix drawn from the openb trace's request shapes.

The classes of SCENARIO.md, by share of requested cores:

- ``interactive`` (about 20%): services with a 2 ms RTT SLO from ``zhongguancun``; only E-Town
  meets it, so this is the latency-critical work.
- ``regional`` (about 30%): services with a 5 ms SLO; both sites qualify. A quarter of the
  multi-replica ones are SPREAD over 2 sites; a few must stay in Beijing (``allowed_sites``).
- ``batch`` (about 40%): batch and analytics without an SLO, a third of them with a deadline;
  some are bound to Zhangbei, where their data lives, a very few to E-Town.
- ``gpu-training`` and ``gpu-inference`` (together about 10% of the cores, all of the GPUs):
  the trace's GPU shapes as they are: whole GPUs (1, 2, 4, 8 per replica) for GANG training
  jobs, fractional and whole single GPUs for inference services (5 ms SLO). A few ask for a GPU
  model.

Request shapes come from ``data/openb_shapes.csv``: the distinct (cpu_milli, memory_mib,
num_gpu, gpu_milli) of ``openb_pod_list_default.csv`` with their counts, re-derived with
``python -m scheduler.bench.workload_mix derive``. The trace's pods are big (10.5 cores on average,
up to 120), more like GPU-host jobs than services, so CPU-only classes use the trace's
(cpu, memory) pairs scaled down, keeping the trace's memory-to-CPU ratio: services by 1/4
(clipped to 0.25..8 cores), batch by 1/2 (clipped to 0.5..16 cores). GPU shapes are kept as
they are, clipped only to the GPU node of the default scenario (112 cores, 2 TiB).
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click
import numpy as np

from scheduler.domain import GPU_MILLIS, Resources, Topology, WorkloadKind, WorkloadSpec
from scheduler.solver import PendingWorkload

SHAPES_FILE = Path(__file__).parent / "data" / "openb_shapes.csv"
SHAPE_COLUMNS = ("cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "count")

# share of requested cores per class group (SCENARIO.md)
CORE_SHARES = {"interactive": 0.20, "regional": 0.30, "batch": 0.40, "gpu": 0.10}
CLASSES = ("interactive", "regional", "batch", "gpu-training", "gpu-inference")
ORIGIN = "zhongguancun"
CRITICAL_SLO_MS = 2.0
REGIONAL_SLO_MS = 5.0
TENANTS = 24
# a fixed instant (local time of the scenario) that deadlines count from, so the mix is
# deterministic; deadlines only matter to policies that shift work in time
EPOCH = datetime(2025, 1, 15, 12, 0, tzinfo=timezone(timedelta(hours=8)))

# scaling of the trace's CPU-only shapes per class: (factor, min cpu_millis, max cpu_millis)
_SERVICE_SCALE = (0.25, 250, 8000)
_BATCH_SCALE = (0.5, 500, 16000)
# the GPU node of the default scenario, to which GPU shapes are clipped
_GPU_NODE_CPU = 112_000
_GPU_NODE_MEMORY = 2_097_152
# replicas per workload: (low, high, probability); many 1-3, some 10-50
_REPLICAS = ((1, 1, 0.34), (2, 2, 0.20), (3, 3, 0.14), (4, 9, 0.20), (10, 50, 0.12))
_GANG_REPLICAS = (1, 2, 2, 2, 3, 4, 4, 8)
_MAX_GANG_GPUS = 32  # a training gang larger than this is cut to fit 4 full GPU nodes


@dataclass(frozen=True, slots=True)
class Shape:
    """A request shape of the trace and how many pods had it."""

    cpu_milli: int
    memory_mib: int
    num_gpu: int
    gpu_milli: int
    count: int = 1

    @property
    def key(self) -> tuple[int, int, int, int]:
        return (self.cpu_milli, self.memory_mib, self.num_gpu, self.gpu_milli)

    @property
    def fractional(self) -> bool:
        return self.num_gpu == 1 and 0 < self.gpu_milli < GPU_MILLIS

    def resources(self) -> Resources:
        """In the trace, ``gpu_milli`` is the share of one GPU when ``num_gpu`` is 1; a pod with
        ``num_gpu`` > 1 (or 1 and 1000 millis) takes that many whole GPUs."""
        if self.num_gpu == 0:
            return Resources(self.cpu_milli, self.memory_mib)
        if self.fractional:
            return Resources(self.cpu_milli, self.memory_mib, gpu_millis=self.gpu_milli)
        return Resources(self.cpu_milli, self.memory_mib, gpus=self.num_gpu)


# --------------------------------------------------------------------------- shapes


def derive_shapes(pod_list: str | Path) -> list[Shape]:
    """The distinct request shapes of an openb pod list with their counts, most common first."""
    counts: Counter[tuple[int, int, int, int]] = Counter()
    with open(pod_list, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            key = (
                int(row["cpu_milli"]),
                int(row["memory_mib"]),
                int(row["num_gpu"]),
                int(row["gpu_milli"]),
            )
            counts[key] += 1
    if not counts:
        raise click.ClickException(f"{pod_list}: no pods")
    return [Shape(*k, count=c) for k, c in sorted(counts.items(), key=lambda kc: (-kc[1], kc[0]))]


def write_shapes(shapes: Sequence[Shape], path: str | Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(SHAPE_COLUMNS)
        for s in shapes:
            w.writerow((s.cpu_milli, s.memory_mib, s.num_gpu, s.gpu_milli, s.count))


def load_shapes(path: str | Path | None = None) -> list[Shape]:
    """The shapes table shipped with the suite (default), a table of the same columns, or a
    full openb pod list (``name,cpu_milli,memory_mib,num_gpu,gpu_milli,...``)."""
    path = Path(path) if path is not None else SHAPES_FILE
    try:
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
    except OSError as e:
        raise click.ClickException(f"{path}: cannot read shapes: {e.strerror}") from None
    if "count" not in header:
        return derive_shapes(path)
    with open(path, newline="", encoding="utf-8") as f:
        shapes = [Shape(*(int(row[c]) for c in SHAPE_COLUMNS)) for row in csv.DictReader(f)]
    if not shapes:
        raise click.ClickException(f"{path}: no shapes")
    return shapes


# --------------------------------------------------------------------------- the mix


class _Sampler:
    """Weighted draws from a list of shapes (weights = trace counts)."""

    def __init__(self, shapes: Sequence[Shape], rng: np.random.Generator) -> None:
        if not shapes:
            raise ValueError("no shapes to draw from")
        self.shapes = list(shapes)
        weights = np.asarray([s.count for s in shapes], dtype=np.float64)
        self.p = weights / weights.sum()
        self.rng = rng
        self.mean_cpu = float(np.dot(self.p, [s.cpu_milli for s in shapes]))

    def draw(self) -> Shape:
        return self.shapes[int(self.rng.choice(len(self.shapes), p=self.p))]


def _scaled(shape: Shape, scale: tuple[float, int, int]) -> Resources:
    factor, low, high = scale
    cpu = shape.cpu_milli * factor
    mem = shape.memory_mib * factor
    if cpu > high:  # clip, keeping the memory-to-CPU ratio
        mem *= high / cpu
        cpu = high
    elif cpu < low:
        mem *= low / cpu
        cpu = low
    # round to 50 millicores and whole MiB, as a manifest would say it
    return Resources(round(cpu / 50.0) * 50, max(64, round(mem)))


def _gpu_resources(shape: Shape) -> Resources:
    r = shape.resources()
    return Resources(
        min(r.cpu_millis, _GPU_NODE_CPU),
        min(r.memory_mib, _GPU_NODE_MEMORY),
        r.gpus,
        r.gpu_millis,
    )


def _replicas(rng: np.random.Generator) -> int:
    p = np.asarray([w for _, _, w in _REPLICAS])
    low, high, _ = _REPLICAS[int(rng.choice(len(_REPLICAS), p=p / p.sum()))]
    return int(rng.integers(low, high + 1))


def _group(cls: str) -> str:
    return "gpu" if cls.startswith("gpu") else cls


def generate_mix(
    replicas: int,
    seed: int = 0,
    shapes: Sequence[Shape] | None = None,
    *,
    origin: str = ORIGIN,
) -> tuple[PendingWorkload, ...]:
    """Workloads with exactly ``replicas`` replicas in all, in arrival order, deterministic for
    a seed. Classes are drawn so that each one's share of requested cores tracks CORE_SHARES
    (the class furthest below its share is the likeliest next), so the shares hold at any size.
    """
    if replicas < 1:
        raise ValueError(f"replicas must be >= 1 (got {replicas})")
    rng = np.random.default_rng(seed)
    shapes = list(shapes) if shapes is not None else load_shapes()
    whole = [s for s in shapes if s.num_gpu >= 1 and not s.fractional]
    single = [s for s in shapes if s.num_gpu == 1]
    # services and batch draw (cpu, memory) from every pod of the trace: the host shapes of GPU
    # pods are real container shapes too, and there are few CPU-only shapes in the trace
    host = _Sampler([Shape(s.cpu_milli, s.memory_mib, 0, 0, s.count) for s in shapes], rng)
    training = _Sampler(whole, rng) if whole else None
    inference = _Sampler(single, rng) if single else None
    groups = [g for g in CORE_SHARES if g != "gpu" or (training and inference)]
    share = np.asarray([CORE_SHARES[g] for g in groups])
    share = share / share.sum()
    cores = np.zeros(len(groups))
    out: list[PendingWorkload] = []
    left = replicas
    while left > 0:
        # deficit of each group against its share of the cores so far (plus one typical
        # workload, so the first draws are spread by share too)
        deficit = np.maximum(share * (cores.sum() + 20_000.0) - cores, 0.0) + 1e-9
        gi = int(rng.choice(len(groups), p=deficit / deficit.sum()))
        group = groups[gi]
        if group == "gpu":
            assert training is not None and inference is not None
            cls = "gpu-training" if rng.random() < 0.4 else "gpu-inference"
        else:
            cls = group
        spec = _workload(cls, len(out), rng, host, training, inference, origin, left)
        out.append(PendingWorkload(f"{cls}-{len(out):05d}", spec))
        left -= spec.replica_count
        cores[gi] += spec.resources.cpu_millis * spec.replica_count
    return tuple(out)


def _workload(
    cls: str,
    index: int,
    rng: np.random.Generator,
    host: _Sampler,
    training: _Sampler | None,
    inference: _Sampler | None,
    origin: str,
    left: int,
) -> WorkloadSpec:
    tenant = f"zgc-{int(rng.integers(TENANTS)):02d}"
    name = f"{cls}-{index:05d}"
    labels = {"class": cls}
    if cls == "interactive":
        n = min(_replicas(rng), left)
        return WorkloadSpec(
            tenant=tenant,
            name=name,
            resources=_scaled(host.draw(), _SERVICE_SCALE),
            replicas=n,
            origin=origin,
            max_latency_ms=CRITICAL_SLO_MS,
            priority=2,
            kind=WorkloadKind.SERVICE,
            labels=labels,
        )
    if cls == "regional":
        n = min(_replicas(rng), left)
        spread = n >= 2 and rng.random() < 0.25
        beijing_only = not spread and rng.random() < 0.02
        return WorkloadSpec(
            tenant=tenant,
            name=name,
            resources=_scaled(host.draw(), _SERVICE_SCALE),
            replicas=n,
            origin=origin,
            max_latency_ms=REGIONAL_SLO_MS,
            priority=1,
            kind=WorkloadKind.SERVICE,
            topology=Topology.SPREAD if spread else Topology.UNSPECIFIED,
            min_sites=2 if spread else 0,
            allowed_sites=("etown",) if beijing_only else (),
            labels=labels,
        )
    if cls == "batch":
        n = min(_replicas(rng), left)
        duration = int(rng.integers(10, 241)) * 60
        deadline = None
        if rng.random() < 0.35:
            slack_h = int(rng.integers(2, 25))
            deadline = EPOCH + timedelta(seconds=duration, hours=slack_h)
        u = rng.random()
        allowed = ("zhangbei",) if u < 0.10 else ("etown",) if u < 0.11 else ()
        return WorkloadSpec(
            tenant=tenant,
            name=name,
            resources=_scaled(host.draw(), _BATCH_SCALE),
            replicas=n,
            origin=origin,
            priority=0,
            kind=WorkloadKind.BATCH,
            duration_s=duration,
            deadline=deadline,
            allowed_sites=allowed,
            labels=labels,
        )
    if cls == "gpu-training":
        assert training is not None
        r = _gpu_resources(training.draw())
        n = _GANG_REPLICAS[int(rng.integers(len(_GANG_REPLICAS)))]
        n = max(1, min(n, _MAX_GANG_GPUS // r.gpus, left))
        return WorkloadSpec(
            tenant=tenant,
            name=name,
            resources=r,
            replicas=n,
            origin=origin,
            priority=int(rng.random() < 0.3),
            kind=WorkloadKind.BATCH,
            duration_s=int(rng.integers(1, 25)) * 3600,
            topology=Topology.GANG if n > 1 else Topology.UNSPECIFIED,
            gpu_models=("H800",) if rng.random() < 0.2 else (),
            labels=labels,
        )
    assert inference is not None and cls == "gpu-inference"
    n = min(int(rng.integers(1, 7)), left)
    return WorkloadSpec(
        tenant=tenant,
        name=name,
        resources=_gpu_resources(inference.draw()),
        replicas=n,
        origin=origin,
        max_latency_ms=REGIONAL_SLO_MS,
        priority=1,
        kind=WorkloadKind.SERVICE,
        gpu_models=("A800",) if rng.random() < 0.1 else (),
        labels=labels,
    )


def describe(mix: Sequence[PendingWorkload]) -> dict[str, dict[str, float]]:
    """Per class: workloads, replicas, share of requested cores, GPUs (whole-GPU equivalents)."""
    total_cores = sum(w.spec.resources.cpu_millis * w.spec.replica_count for w in mix) / 1000.0
    out: dict[str, dict[str, float]] = {}
    for w in mix:
        cls = w.spec.labels.get("class", "?")
        d = out.setdefault(cls, {"workloads": 0, "replicas": 0, "cores": 0.0, "gpus": 0.0})
        n = w.spec.replica_count
        d["workloads"] += 1
        d["replicas"] += n
        d["cores"] += w.spec.resources.cpu_millis * n / 1000.0
        d["gpus"] += w.spec.resources.gpu_demand_millis * n / GPU_MILLIS
    for d in out.values():
        d["core_share"] = d["cores"] / total_cores if total_cores else math.nan
    return out


# --------------------------------------------------------------------------- command line


@click.group()
def main() -> None:
    """The shapes table and the workload mix of the scenario suite."""


@main.command()
@click.argument(
    "pod_list",
    type=click.Path(exists=True, dir_okay=False),
    default="../shared/data/openb/openb_pod_list_default.csv",
)
@click.option("--out", type=click.Path(dir_okay=False), default=str(SHAPES_FILE), show_default=True)
def derive(pod_list: str, out: str) -> None:
    """Re-derive the shapes table from an openb pod list."""
    shapes = derive_shapes(pod_list)
    write_shapes(shapes, out)
    click.echo(f"{len(shapes)} shapes of {sum(s.count for s in shapes)} pods written to {out}")


@main.command()
@click.option("--replicas", type=int, default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--shapes", "shapes_path", type=click.Path(dir_okay=False), default=None)
def show(replicas: int, seed: int, shapes_path: str | None) -> None:
    """Print the per-class make-up of a generated mix."""
    mix = generate_mix(replicas, seed, load_shapes(shapes_path))
    click.echo(f"{len(mix)} workloads, {sum(w.spec.replica_count for w in mix)} replicas")
    for cls, d in sorted(describe(mix).items()):
        click.echo(
            f"  {cls:14s} workloads {d['workloads']:6.0f}  replicas {d['replicas']:7.0f}  "
            f"cores {d['cores']:9.1f} ({d['core_share']:6.1%})  GPUs {d['gpus']:7.2f}"
        )


if __name__ == "__main__":
    main()
