"""Invariants of ``max_replicas_per_node`` and the SERVICE default for every policy: random
workloads with small replicas (many fit one node, so packing would put them together) on the
``tiny`` scenario, and a seeded mix on the scaled default scenario where packing and every
repair run. The independent checker judges each placement."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler.bench.checker import check_result
from scheduler.bench.scenario import scaled_scenario
from scheduler.bench.workload_mix import generate_mix
from scheduler.domain import Cluster, Resources, Scenario, Topology, WorkloadKind, WorkloadSpec
from scheduler.solver import POLICIES, PendingWorkload, Problem, SolverParams, solve
from tests.test_properties import PROPERTY_SETTINGS, TIME_LIMIT_S


@st.composite
def spread_specs(draw: st.DrawFn) -> WorkloadSpec:
    n = draw(st.integers(1, 8))
    topology = draw(st.sampled_from([Topology.UNSPECIFIED, Topology.GANG, Topology.SPREAD]))
    if topology == Topology.SPREAD and n < 2:
        topology = Topology.UNSPECIFIED
    gpu = draw(st.sampled_from([0, 0, 0, 250]))
    return WorkloadSpec(
        tenant="t",
        resources=Resources(draw(st.integers(100, 1500)), draw(st.integers(64, 2000)), 0, gpu),
        replicas=n,
        priority=draw(st.integers(0, 2)),
        kind=draw(st.sampled_from([WorkloadKind.SERVICE, WorkloadKind.BATCH])),
        allowed_sites=draw(st.sampled_from([(), ("near",), ("green",)])),
        topology=topology,
        min_sites=2 if topology == Topology.SPREAD else 0,
        max_replicas_per_node=draw(st.sampled_from([0, 0, 1, 2, 3])),
    )


@st.composite
def spread_problems(draw: st.DrawFn, scenario: Scenario) -> Problem:
    cluster = Cluster(scenario)
    for _ in range(draw(st.integers(0, 3))):
        node = draw(st.integers(0, 4))
        r = Resources(draw(st.integers(100, 2000)), draw(st.integers(64, 2000)))
        if cluster.fits(node, r):
            cluster.allocate(node, r)
    specs = draw(st.lists(spread_specs(), min_size=1, max_size=8))
    workloads = tuple(PendingWorkload(f"w{i}", s) for i, s in enumerate(specs))
    return Problem(scenario, cluster, workloads, hour=draw(st.integers(0, 23)))


@pytest.mark.parametrize("default_spread", [True, False], ids=["default", "no-default"])
@pytest.mark.parametrize("policy", POLICIES)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_no_policy_puts_more_replicas_on_a_node_than_the_limit_allows(
    tiny, policy, default_spread, data
):
    problem = data.draw(spread_problems(tiny))
    params = SolverParams(policy=policy, time_limit_s=TIME_LIMIT_S, default_spread=default_spread)
    result = solve(problem, params, seed=1)
    found = check_result(
        problem,
        result,
        cpu_on_gpu_nodes=params.cpu_on_gpu_nodes,
        default_spread=default_spread,
    )
    assert found == []
    if not default_spread:
        return
    # the default, stated directly: a placed SERVICE of 2 or more that sets no limit of its
    # own is on 2 or more nodes
    for w in problem.workloads:
        s = w.spec
        if (
            w.id in result.placements
            and s.is_service
            and s.replica_count >= 2
            and not s.max_replicas_per_node
        ):
            assert len({p.node for p in result.placements[w.id]}) >= 2, w


@PROPERTY_SETTINGS
@given(data=st.data())
def test_the_valley_bound_stays_below_every_peers_placement_under_limits(tiny, data):
    problem = data.draw(spread_problems(tiny))
    valley = solve(problem, SolverParams(time_limit_s=TIME_LIMIT_S), seed=1)
    if valley.bound is None:
        return
    for policy in POLICIES:
        other = solve(problem, SolverParams(policy=policy, time_limit_s=TIME_LIMIT_S), seed=1)
        assert valley.bound <= other.objective + 1e-9 * max(1.0, other.objective), policy


@pytest.mark.parametrize("policy", POLICIES)
def test_a_mix_of_services_keeps_the_default_spread_through_packing_and_repairs(
    beijing_hebei, policy
):
    # 1,500 replicas of the benchmark's mix, a fifth of the services asking for 1 a node
    mix = [
        PendingWorkload(
            w.id,
            WorkloadSpec(**{**_fields(w.spec), "max_replicas_per_node": 1})
            if w.spec.is_service and i % 5 == 0
            else w.spec,
        )
        for i, w in enumerate(generate_mix(1500, seed=3))
    ]
    scenario = scaled_scenario(beijing_hebei, mix, 0.7, 0.9)
    problem = Problem(scenario, Cluster(scenario), tuple(mix))
    params = SolverParams(policy=policy, time_limit_s=2.0)
    result = solve(problem, params, seed=0)
    assert check_result(problem, result, cpu_on_gpu_nodes=params.cpu_on_gpu_nodes) == []
    spread = [
        w
        for w in mix
        if w.id in result.placements and w.spec.replicas_per_node_limit < w.spec.replica_count
    ]
    assert spread, "the mix has services the limit spreads"
    if policy == "valley":
        assert not result.stats.repairs_failed
        assert len(result.placements) >= 0.9 * len(mix)


def _fields(spec: WorkloadSpec) -> dict[str, object]:
    return {f: getattr(spec, f) for f in WorkloadSpec.__dataclass_fields__}
