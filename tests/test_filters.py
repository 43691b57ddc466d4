"""The eligibility filters one by one, their registry, and the cache key they declare, on the
tiny scenario (tests/conftest.py): near = 2 CPU nodes (4 cores, 8 GiB), 1 ms from the city;
green = 3 such CPU nodes and one 8-core 64 GiB node with 2 A800 GPUs, 4 ms from the city."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest

from scheduler.domain import (
    Cluster,
    ReasonCode,
    Resources,
    Scenario,
    Topology,
    WorkloadSpec,
)
from scheduler.solver import SolverParams
from scheduler.solver.filters import (
    FILTERS,
    FINAL_READS,
    Candidates,
    FilterRegistry,
    GpuModel,
    NodeShape,
    Residency,
    Slo,
    Verdict,
    eligibility,
    eligibility_of,
)
from scheduler.solver.filters.plugins import SPEC_FIELDS

PARAMS = SolverParams()
CPU = Resources(1000, 1024)
GPU = Resources(1000, 1024, gpus=1)


def spec(resources: Resources = CPU, **kw: Any) -> WorkloadSpec:
    return WorkloadSpec(tenant="t", resources=resources, **kw)


def site_pools(scenario: Scenario, site: str) -> tuple[int, ...]:
    return tuple(i for i, p in enumerate(scenario.pools) if p.site == site)


def run(scenario: Scenario, f: Any, s: WorkloadSpec, site: str, params: SolverParams) -> Verdict:
    c = Candidates(scenario.site(site), site_pools(scenario, site), scenario.pools, params)
    return f.check(s, c)


P = PARAMS
ON_GPU = SolverParams(cpu_on_gpu_nodes=True)
C = ReasonCode
CORES6 = Resources(6000, 1024)
GPUS4 = Resources(1000, 1024, gpus=4)
SLO2 = {"origin": "city", "max_latency_ms": 2}

# (behaviour, filter, spec, site, params, the code it gives or None, the pools it keeps)
CASES = [
    ("residency passes any site without allowed_sites", Residency(), spec(), "near", P, None,
        ("cpu",)),
    ("residency passes an allowed site", Residency(), spec(allowed_sites=("near",)), "near", P,
        None, ("cpu",)),
    ("residency rules out a site not allowed", Residency(), spec(allowed_sites=("green",)),
        "near", P, C.RESIDENCY, ("cpu",)),
    ("slo passes any site without an SLO", Slo(), spec(origin="city"), "green", P, None,
        ("cpu", "gpu")),
    ("slo passes a site within the RTT", Slo(), spec(**SLO2), "near", P, None, ("cpu",)),
    ("slo rules out a site beyond the RTT", Slo(), spec(**SLO2), "green", P, C.SLO,
        ("cpu", "gpu")),
    ("gpu_model ignores CPU work", GpuModel(), spec(gpu_models=("H100",)), "green", P, None,
        ("cpu", "gpu")),
    ("gpu_model ignores GPU work naming no model", GpuModel(), spec(GPU), "near", P, None,
        ("cpu",)),
    ("gpu_model keeps nodes of a named model", GpuModel(), spec(GPU, gpu_models=("A800",)),
        "green", P, None, ("gpu",)),
    ("gpu_model rules out a site without the model", GpuModel(),
        spec(GPU, gpu_models=("H100",)), "green", P, C.GPU_MODEL, ()),
    ("gpu_model rules out a site without GPUs", GpuModel(), spec(GPU, gpu_models=("A800",)),
        "near", P, C.GPU_MODEL, ()),
    ("node_shape keeps CPU work off GPU nodes", NodeShape(), spec(), "green", P, None, ("cpu",)),
    ("node_shape lets CPU work on GPU nodes when asked", NodeShape(), spec(), "green", ON_GPU,
        None, ("cpu", "gpu")),
    ("node_shape keeps GPU work on GPU nodes", NodeShape(), spec(GPU), "green", P, None,
        ("gpu",)),
    ("node_shape keeps only nodes a replica fits", NodeShape(), spec(CORES6), "green", ON_GPU,
        None, ("gpu",)),
    ("node_shape rules out a replica larger than every node", NodeShape(), spec(CORES6),
        "green", P, C.SIZE, ()),
    ("node_shape rules out a site with no node of the kind", NodeShape(), spec(GPU), "near", P,
        C.SIZE, ()),
    ("node_shape rules out more GPUs than a node has", NodeShape(), spec(GPUS4), "green", P,
        C.SIZE, ()),
]  # fmt: skip


@pytest.mark.parametrize(
    ("f", "s", "site", "params", "code", "kept"),
    [pytest.param(*c[1:], id=c[0]) for c in CASES],
)
def test_filter_verdict(
    tiny: Scenario,
    f: Any,
    s: WorkloadSpec,
    site: str,
    params: SolverParams,
    code: ReasonCode | None,
    kept: tuple[str, ...],
) -> None:
    verdict = run(tiny, f, s, site, params)
    assert tuple(tiny.pools[p].name for p in verdict.pools) == kept
    if code is None:
        assert verdict.reason is None
    else:
        assert verdict.reason is not None
        assert verdict.reason.code is code is f.CODE
        assert verdict.reason.site == site and verdict.reason.message


def test_node_shape_names_the_resource_and_the_largest_node(tiny: Scenario) -> None:
    # near with nodes of 4 and of 8 cores
    near = tiny.site("near")
    (small,) = near.pools
    big = replace(small, name="big", count=1, node=replace(small.node, cpu_millis=8000))
    scenario = replace(tiny, sites=(replace(near, pools=(small, big)),))
    r = run(scenario, NodeShape(), spec(Resources(9000, 1024)), "near", PARAMS).reason
    assert r is not None
    assert (r.code, r.resource, r.requested, r.largest_free) == (C.SIZE, "cpu_millis", 9000, 8000)
    assert r.message == "one replica needs cpu_millis 9000, larger than every node (8000)"


def test_the_registry_refuses_a_second_filter_of_the_same_name() -> None:
    registry = FilterRegistry([Residency()])
    with pytest.raises(ValueError, match="residency"):
        registry.register(Residency())


def test_the_registry_refuses_a_filter_that_reads_a_field_a_spec_lacks() -> None:
    class Bad(Residency):
        NAME: ClassVar[str] = "bad"
        READS: ClassVar[frozenset[str]] = frozenset({"allowed_sites", "colour"})

    with pytest.raises(ValueError, match="colour"):
        FilterRegistry().register(Bad())


def test_the_registry_runs_residency_slo_gpu_model_then_node_shape() -> None:
    assert [f.NAME for f in FILTERS] == ["residency", "slo", "gpu_model", "node_shape"]
    assert [f.CODE for f in FILTERS] == [
        ReasonCode.RESIDENCY,
        ReasonCode.SLO,
        ReasonCode.GPU_MODEL,
        ReasonCode.SIZE,
    ]


def test_every_filter_gives_a_permanent_code() -> None:
    # they read the spec and the scenario only, so their verdict cannot change with capacity
    assert all(f.CODE.permanent for f in FILTERS)


class _Recording:
    """A spec that records which fields are read, properties (replica_count) included."""

    def __init__(self, spec: WorkloadSpec) -> None:
        object.__setattr__(self, "_spec", spec)
        object.__setattr__(self, "read", set())

    def __getattr__(self, name: str) -> Any:
        attr = getattr(type(self._spec), name, None)
        if isinstance(attr, property):
            return attr.fget(self)  # type: ignore[misc]
        self.read.add(name)
        return getattr(self._spec, name)


RECORDED_SPECS = [
    spec(origin="city", max_latency_ms=2, allowed_sites=("near", "green")),
    spec(GPU, gpu_models=("A800",), replicas=2, topology=Topology.GANG),
    spec(replicas=4, topology=Topology.SPREAD, min_sites=2, origin="far", max_latency_ms=9),
    spec(Resources(6000, 1024)),
]


@pytest.mark.parametrize("s", RECORDED_SPECS)
def test_each_filter_reads_only_the_fields_it_declares(tiny: Scenario, s: WorkloadSpec) -> None:
    for f in FILTERS:
        for site in ("near", "green"):
            rec = _Recording(s)
            run(tiny, f, rec, site, PARAMS)  # type: ignore[arg-type]
            assert rec.read <= f.READS, f.NAME


@pytest.mark.parametrize("s", RECORDED_SPECS)
def test_eligibility_reads_only_the_fields_of_the_cache_key(
    tiny: Scenario, s: WorkloadSpec
) -> None:
    rec = _Recording(s)
    eligibility(tiny, Cluster(tiny), rec, PARAMS)  # type: ignore[arg-type]
    assert rec.read <= FILTERS.reads | FINAL_READS
    assert FILTERS.reads | FINAL_READS <= SPEC_FIELDS


def test_workloads_differing_outside_the_cache_key_share_one_eligibility(tiny: Scenario) -> None:
    base = spec(origin="city", max_latency_ms=2)
    unread = sorted(SPEC_FIELDS - FILTERS.reads - FINAL_READS)
    others: dict[str, object] = {
        "tenant": "u", "name": "n", "priority": 3, "duration_s": 60,
        "deadline": datetime(2030, 1, 1, tzinfo=UTC), "labels": {"a": "b"},
    }  # fmt: skip
    assert set(unread) == set(others)  # a new spec field: does a rule read it?
    changed = [replace(base, **{f: others[f]}) for f in unread]
    got = eligibility_of(
        tiny, Cluster(tiny), [(str(i), s) for i, s in enumerate([base, *changed])], PARAMS
    )
    assert len({id(e) for e in got.values()}) == 1


def test_workloads_differing_in_a_field_a_filter_reads_do_not_share_one(tiny: Scenario) -> None:
    a = spec(origin="city", max_latency_ms=2)
    b = replace(a, max_latency_ms=5)
    got = eligibility_of(tiny, Cluster(tiny), [("a", a), ("b", b)], PARAMS)
    assert got["a"].sites == ("near",) and got["b"].sites == ("near", "green")


def test_a_site_a_gpu_model_empties_gets_no_node_shape_reason(tiny: Scenario) -> None:
    e = eligibility(tiny, Cluster(tiny), spec(GPU, gpu_models=("H100",)), PARAMS)
    assert [r.code for r in e.reasons_by_site["green"]] == [ReasonCode.GPU_MODEL]


def test_a_site_out_of_residency_and_too_small_gets_both_reasons(tiny: Scenario) -> None:
    s = spec(Resources(6000, 1024), allowed_sites=("green",))
    e = eligibility(tiny, Cluster(tiny), s, PARAMS)
    assert [r.code for r in e.reasons_by_site["near"]] == [ReasonCode.RESIDENCY, ReasonCode.SIZE]
    assert dataclasses.asdict(e.reasons_by_site["near"][1])["resource"] == "cpu_millis"
