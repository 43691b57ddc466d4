"""The independent checker catches every kind of violation, on the ``tiny`` scenario.

Nodes of ``tiny``: near/cpu-0000..0001 and green/cpu-0000..0002 (4 cores, 8 GiB each) and
green/gpu-0000 (8 cores, 64 GiB, 2 x A800). RTT from ``city``: near 1 ms, green 4 ms.
"""

from __future__ import annotations

import pytest

from scheduler.bench.checker import Violation, check_placements, check_result
from scheduler.domain import (
    Cluster,
    ReplicaPlacement,
    Resources,
    Scenario,
    Topology,
    WorkloadKind,
    WorkloadSpec,
)
from scheduler.solver import PendingWorkload, PlacementResult, Problem, SolveStatus, Unplaced

CPU = Resources(1000, 1024)
BIG = Resources(3000, 1024)
FAT = Resources(1000, 5000)
WHOLE = Resources(1000, 1024, gpus=1)
TWO = Resources(1000, 1024, gpus=2)
SHARE6 = Resources(1000, 1024, gpu_millis=600)
SHARE1 = Resources(1000, 1024, gpu_millis=100)


def spec(r: Resources = CPU, n: int = 1, **kw: object) -> WorkloadSpec:
    return WorkloadSpec(tenant="t", resources=r, replicas=n, origin="city", **kw)  # type: ignore[arg-type]


def at(
    scenario: Scenario, s: WorkloadSpec, replica: int, node: str, gpus: tuple[int, ...] = ()
) -> ReplicaPlacement:
    """A placement that is right in every field but the ones a case breaks on purpose."""
    site = node.split("/")[0]
    return ReplicaPlacement(replica, site, node, scenario.site(site).latency_ms[s.origin], gpus)


N0, N1 = "near/cpu-0000", "near/cpu-0001"
G0 = "green/cpu-0000"
GPU = "green/gpu-0000"
GANG = Topology.GANG
SPREAD = Topology.SPREAD


def p(wid: str, replica: int, node: str, *gpus: int) -> tuple[str, int, str, tuple[int, ...]]:
    return (wid, replica, node, gpus)


# (case, specs by workload id, placements, the one rule broken)
CASES = [
    ("cpu over capacity", {"a": spec(BIG, 2)}, [p("a", 0, N0), p("a", 1, N0)], "cpu"),
    ("memory over capacity", {"a": spec(FAT, 2)}, [p("a", 0, N0), p("a", 1, N0)], "memory"),
    ("GPU shares above 1000", {"a": spec(SHARE6, 2)},
        [p("a", 0, GPU, 0), p("a", 1, GPU, 0)], "gpu_share"),
    ("whole GPU shared", {"a": spec(WHOLE), "b": spec(SHARE1)},
        [p("a", 0, GPU, 1), p("b", 0, GPU, 1)], "gpu_exclusive"),
    ("too few GPU indices", {"a": spec(TWO)}, [p("a", 0, GPU, 0)], "gpu_indices"),
    ("duplicate GPU indices", {"a": spec(TWO)}, [p("a", 0, GPU, 0, 0)], "gpu_indices"),
    ("GPU index off the node", {"a": spec(SHARE1)}, [p("a", 0, GPU, 2)], "gpu_indices"),
    ("GPU request on a CPU node", {"a": spec(SHARE1)}, [p("a", 0, G0, 0)], "gpu_indices"),
    ("GPU index for a CPU request", {"a": spec(CPU)}, [p("a", 0, GPU, 0)], "gpu_indices"),
    ("SLO breached", {"a": spec(max_latency_ms=2.0)}, [p("a", 0, G0)], "slo"),
    ("outside allowed_sites", {"a": spec(allowed_sites=("near",))}, [p("a", 0, G0)],
        "residency"),
    ("wrong GPU model", {"a": spec(WHOLE, gpu_models=("H800",))}, [p("a", 0, GPU, 0)],
        "gpu_model"),
    ("GANG over two sites", {"a": spec(CPU, 2, topology=GANG)}, [p("a", 0, N0), p("a", 1, G0)],
        "gang"),
    ("SPREAD in one site", {"a": spec(CPU, 2, topology=SPREAD, min_sites=2)},
        [p("a", 0, N0), p("a", 1, N1)], "spread"),
    ("missing replica", {"a": spec(CPU, 3)}, [p("a", 0, N0), p("a", 1, N1)], "replicas"),
    ("replicas misnumbered", {"a": spec(CPU, 2)}, [p("a", 0, N0), p("a", 2, N1)], "replicas"),
    ("replica placed twice", {"a": spec(CPU, 2)}, [p("a", 0, N0), p("a", 0, N1)], "replicas"),
    ("unknown node", {"a": spec()}, [p("a", 0, "near/cpu-0009")], "unknown_node"),
    ("unknown workload", {"a": spec()}, [p("zz", 0, N0)], "unknown_workload"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("specs", "rows", "rule"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_checker_reports_exactly_the_broken_rule(tiny, specs, rows, rule):
    placements: dict[str, list[ReplicaPlacement]] = {}
    for wid, replica, node, gpus in rows:
        s = specs.get(wid, spec())
        placements.setdefault(wid, []).append(at(tiny, s, replica, node, gpus))
    found = check_placements(tiny, specs, placements)
    assert {v.rule for v in found} == {rule}, [str(v) for v in found]


def test_a_correct_placement_has_no_violations(tiny):
    specs = {
        "web": spec(CPU, 2, topology=Topology.SPREAD, min_sites=2, kind=WorkloadKind.SERVICE),
        "train": spec(TWO, 1, gpu_models=("A800",)),
        "infer": spec(SHARE6, 2),
        "gang": spec(BIG, 2, topology=Topology.GANG, allowed_sites=("green",)),
        "api": spec(CPU, 1, max_latency_ms=2.0),
    }
    placements = {
        "web": [
            at(tiny, specs["web"], 0, "near/cpu-0000"),
            at(tiny, specs["web"], 1, "green/cpu-0000"),
        ],
        "train": [at(tiny, specs["train"], 0, "green/gpu-0000", (0, 1))],
        "gang": [
            at(tiny, specs["gang"], 1, "green/cpu-0001"),
            at(tiny, specs["gang"], 0, "green/cpu-0002"),
        ],
        "api": [at(tiny, specs["api"], 0, "near/cpu-0000")],
    }
    assert check_placements(tiny, specs, placements) == []
    # the same node full to the last millicore is still fine
    full = {"a": spec(Resources(2000, 4096), 2)}
    assert (
        check_placements(
            tiny, full, {"a": [at(tiny, full["a"], i, "near/cpu-0001") for i in range(2)]}
        )
        == []
    )
    # two shares of exactly 500 + 500 fill one GPU
    half = {"a": spec(Resources(100, 100, gpu_millis=500), 2)}
    rows = [at(tiny, half["a"], i, "green/gpu-0000", (1,)) for i in range(2)]
    assert check_placements(tiny, half, {"a": rows}) == []


def test_capacity_violation_names_the_workloads_and_the_numbers(tiny):
    specs = {"a": spec(BIG), "b": spec(BIG)}
    placements = {
        "a": [at(tiny, specs["a"], 0, "near/cpu-0001")],
        "b": [at(tiny, specs["b"], 0, "near/cpu-0001")],
    }
    (v,) = check_placements(tiny, specs, placements)
    assert v == Violation(
        "a,b", "cpu", "6000 cpu_millis allocated > capacity 4000", "near/cpu-0001"
    )


def test_site_that_is_not_the_nodes_site_is_caught(tiny):
    s = spec()
    wrong = ReplicaPlacement(0, "green", "near/cpu-0000", 1.0)
    assert [v.rule for v in check_placements(tiny, {"a": s}, {"a": [wrong]})] == ["site"]


def test_latency_that_is_not_the_origins_rtt_is_caught(tiny):
    s = spec()
    wrong = ReplicaPlacement(0, "near", "near/cpu-0000", 0.0)
    assert [v.rule for v in check_placements(tiny, {"a": s}, {"a": [wrong]})] == ["latency"]


def test_cpu_only_replica_on_a_gpu_node_is_caught_only_when_gpu_nodes_are_reserved(tiny):
    s = spec()
    rows = {"a": [at(tiny, s, 0, "green/gpu-0000")]}
    assert check_placements(tiny, {"a": s}, rows) == []
    found = check_placements(tiny, {"a": s}, rows, cpu_on_gpu_nodes=False)
    assert [v.rule for v in found] == ["gpu_node_reserved"]


def test_running_work_counts_against_capacity(tiny):
    running = Cluster(tiny)
    running.allocate(running.index["near/cpu-0000"], Resources(2000, 1024))
    running.allocate(running.index["green/gpu-0000"], Resources(100, 100, gpu_millis=500), (0,))
    specs = {"a": spec(BIG), "b": spec(SHARE6)}
    placements = {
        "a": [at(tiny, specs["a"], 0, "near/cpu-0000")],
        "b": [at(tiny, specs["b"], 0, "green/gpu-0000", (0,))],
    }
    assert check_placements(tiny, specs, placements) == []
    found = check_placements(tiny, specs, placements, baseline=running)
    assert sorted(v.rule for v in found) == ["cpu", "gpu_share"]


def test_result_must_account_for_every_workload_exactly_once(tiny):
    specs = {"a": spec(), "b": spec(), "c": spec()}
    problem = Problem(tiny, Cluster(tiny), tuple(PendingWorkload(k, v) for k, v in specs.items()))
    result = PlacementResult(
        policy="first-fit",
        status=SolveStatus.HEURISTIC,
        placements={
            "a": (at(tiny, specs["a"], 0, "near/cpu-0000"),),
            "b": (at(tiny, specs["b"], 0, "near/cpu-0001"),),
        },
        unplaced={"b": Unplaced("b", False, "x"), "zz": Unplaced("zz", False, "x")},
        costs={},
        objective=0.0,
    )
    found = sorted((v.workload, v.rule) for v in check_result(problem, result))
    assert found == [("b", "accounting"), ("c", "accounting"), ("zz", "unknown_workload")]
