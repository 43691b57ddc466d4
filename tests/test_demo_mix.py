"""The demo's workload mix: the Zhongguancun shares of SCENARIO.md by cores, openb shapes,
whole and fractional GPUs, and specs the API accepts."""

from __future__ import annotations

import csv
import random
from collections import Counter
from pathlib import Path

import pytest

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler.demo import (
    OPENB_CPU,
    OPENB_GPU_SHARE,
    OPENB_GPU_WHOLE,
    ORIGIN,
    Mix,
    Shape,
    Shapes,
)

OPENB = Path(__file__).resolve().parents[2] / "shared" / "data" / "openb"
N = 4000


def draws(
    seed: int = 0, n: int = N, misconfigured: float = 0.0
) -> list[tuple[str, pb.WorkloadSpec]]:
    mix = Mix(random.Random(seed), misconfigured=misconfigured)
    return [mix.draw() for _ in range(n)]


def cores(spec: pb.WorkloadSpec) -> float:
    return spec.resources.cpu_millis * (spec.replicas or 1) / 1000


def test_core_shares_follow_the_scenario_mix() -> None:
    by_cat: Counter[str] = Counter()
    for cat, spec in draws():
        by_cat[cat] += cores(spec)
    total = sum(by_cat.values())
    shares = {c: v / total for c, v in by_cat.items()}
    for cat, target in {"interactive": 0.2, "regional": 0.3, "batch": 0.4, "gpu": 0.1}.items():
        assert shares[cat] == pytest.approx(target, abs=0.04), (cat, shares)


def test_gpu_work_holds_most_of_the_gpus_with_whole_and_fractional_requests() -> None:
    gpu = [s for c, s in draws() if c == "gpu"]
    whole = [s for s in gpu if s.resources.gpus]
    shares = [s for s in gpu if s.resources.gpu_millis]
    assert whole and shares and len(whole) + len(shares) == len(gpu)
    assert all(0 < s.resources.gpu_millis < 1000 for s in shares)
    assert {s.resources.gpus for s in whole} >= {1, 8}
    assert all(
        not s.resources.gpus and not s.resources.gpu_millis for c, s in draws() if c != "gpu"
    )


# (category, kind, max_latency_ms, needs an origin) - one case per line
CATEGORY_RULES = [
    ("interactive", pb.WORKLOAD_KIND_SERVICE, 2.0, True),
    ("regional", pb.WORKLOAD_KIND_SERVICE, 5.0, True),
    ("batch", pb.WORKLOAD_KIND_BATCH, 0.0, False),
]


@pytest.mark.parametrize(
    ("cat", "kind", "slo", "origin"), CATEGORY_RULES, ids=[c[0] for c in CATEGORY_RULES]
)
def test_category_has_its_kind_and_latency_slo(
    cat: str, kind: int, slo: float, origin: bool
) -> None:
    specs = [s for c, s in draws() if c == cat]
    assert specs
    assert all(s.kind == kind and s.max_latency_ms == slo for s in specs)
    assert all((s.origin == ORIGIN) == origin for s in specs)


def test_most_batch_work_completes_and_some_has_a_deadline() -> None:
    batch = [s for c, s in draws() if c == "batch"]
    with_duration = sum(1 for s in batch if s.duration_s > 0) / len(batch)
    with_deadline = sum(1 for s in batch if s.HasField("deadline")) / len(batch)
    assert 0.7 < with_duration < 0.9
    assert 0.2 < with_deadline < 0.4


def test_every_spec_respects_the_api_limits() -> None:
    for cat, s in draws(misconfigured=0.05):
        r = s.resources
        assert s.tenant and len(s.tenant) <= 253 and len(s.name) <= 253, cat
        assert r.cpu_millis > 0 and r.memory_mib > 0, cat
        assert not (r.gpus and r.gpu_millis) and 0 <= r.gpu_millis < 1000, cat
        assert 1 <= s.replicas <= 10_000, cat
        assert s.max_latency_ms >= 0 and (s.max_latency_ms == 0 or s.origin == ORIGIN), cat
        if s.topology == pb.TOPOLOGY_SPREAD:
            assert 2 <= s.min_sites <= s.replicas, cat
        if s.topology == pb.TOPOLOGY_GANG:
            assert s.replicas > 1, cat
        assert len(s.labels) <= 64, cat


def test_misconfigured_share_gets_an_slo_no_site_meets() -> None:
    got = [s for c, s in draws(misconfigured=0.05) if c == "misconfigured"]
    assert 0.03 * N < len(got) < 0.07 * N
    assert all(s.max_latency_ms == 0.1 and s.origin == ORIGIN for s in got)
    assert not [c for c, _ in draws(misconfigured=0.0) if c == "misconfigured"]


def test_the_same_seed_draws_the_same_mix() -> None:
    assert draws(seed=7, n=200) == draws(seed=7, n=200)
    assert draws(seed=7, n=200) != draws(seed=8, n=200)


def test_trace_file_shapes_are_read_and_weighted(tmp_path: Path) -> None:
    path = tmp_path / "pods.csv"
    rows = [
        ("p0", 4000, 8192, 0, 0),
        ("p1", 4000, 8192, 0, 0),
        ("p2", 8000, 16384, 1, 500),
        ("p3", 12000, 32768, 1, 1000),
        ("p4", 64000, 262144, 8, 1000),
    ]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "gpu_spec"])
        for name, cpu, mem, gpus, milli in rows:
            w.writerow([name, cpu, mem, gpus, milli, ""])
    shapes = Shapes.from_trace(path)
    assert shapes.cpu == ((Shape(4000, 8192), 2),)
    assert shapes.gpu_share == ((Shape(8000, 16384, 0, 500), 1),)
    assert set(shapes.gpu_whole) == {
        (Shape(12000, 32768, 1, 0), 1),
        (Shape(64000, 262144, 8, 0), 1),
    }


@pytest.mark.skipif(
    not (OPENB / "openb_pod_list_default.csv").is_file(), reason="openb trace not present"
)
def test_embedded_shapes_are_the_trace_shapes_with_their_counts() -> None:
    counts: Counter[tuple[int, int, int, int]] = Counter()
    with open(OPENB / "openb_pod_list_default.csv", newline="") as f:
        for row in csv.DictReader(f):
            key = (
                int(row["cpu_milli"]),
                int(row["memory_mib"]),
                int(row["num_gpu"]),
                int(row["gpu_milli"]),
            )
            counts[key] += 1
    for cpu, mem, gpus, milli, n in (*OPENB_CPU, *OPENB_GPU_SHARE, *OPENB_GPU_WHOLE):
        assert counts[(cpu, mem, gpus, milli)] == n, (cpu, mem, gpus, milli)
