"""Invariants of every policy, on small random problems of the ``tiny`` scenario.

For every policy of ``POLICIES``: the placement holds every hard rule (checked by the
independent checker, on top of work already running), the reported objective is its
recomputation, a bound never exceeds the objective, unplaced workloads say why, and the same
seed gives the same placement.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.bench.checker import check_result
from scheduler.domain import (
    Cluster,
    Resources,
    Scenario,
    Topology,
    WorkloadKind,
    WorkloadSpec,
)
from scheduler.solver import POLICIES, PendingWorkload, Problem, SolverParams, solve
from scheduler.solver.objective import evaluate

TIME_LIMIT_S = 0.5
# raise for a deeper search, e.g. VALLEY_PROPERTY_EXAMPLES=500
EXAMPLES = int(os.environ.get("VALLEY_PROPERTY_EXAMPLES", "25"))
PROPERTY_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@st.composite
def resources(draw: st.DrawFn) -> Resources:
    kind = draw(st.sampled_from(["cpu", "cpu", "cpu", "share", "whole"]))
    if kind == "cpu":
        return Resources(draw(st.integers(100, 4500)), draw(st.integers(64, 9000)))
    cpu = draw(st.integers(100, 8000))
    mem = draw(st.integers(64, 70_000))
    if kind == "share":
        return Resources(cpu, mem, gpu_millis=draw(st.integers(1, 999)))
    return Resources(cpu, mem, gpus=draw(st.integers(1, 3)))


@st.composite
def workload_specs(draw: st.DrawFn) -> WorkloadSpec:
    n = draw(st.integers(1, 4))
    origin = draw(st.sampled_from(["city", "far", ""]))
    slo = draw(st.sampled_from([0.0, 2.0, 5.0])) if origin else 0.0
    topology = draw(st.sampled_from([Topology.UNSPECIFIED, Topology.GANG, Topology.SPREAD]))
    if topology == Topology.SPREAD and n < 2:
        topology = Topology.UNSPECIFIED
    return WorkloadSpec(
        tenant="t",
        resources=draw(resources()),
        replicas=n,
        origin=origin,
        max_latency_ms=slo,
        priority=draw(st.integers(0, 2)),
        kind=draw(st.sampled_from([WorkloadKind.SERVICE, WorkloadKind.BATCH])),
        allowed_sites=draw(st.sampled_from([(), ("near",), ("green",), ("near", "green")])),
        topology=topology,
        min_sites=2 if topology == Topology.SPREAD else 0,
        gpu_models=draw(st.sampled_from([(), (), ("A800",), ("H800",)])),
    )


@st.composite
def running_work(draw: st.DrawFn) -> list[tuple[int, Resources]]:
    """Work already on some nodes: (node index, resources) of ``tiny``'s six nodes."""
    out = []
    for _ in range(draw(st.integers(0, 3))):
        node = draw(st.integers(0, 5))
        r = Resources(draw(st.integers(100, 3000)), draw(st.integers(64, 4000)))
        if node == 5 and draw(st.booleans()):  # the GPU node
            r = Resources(r.cpu_millis, r.memory_mib, gpu_millis=draw(st.integers(1, 999)))
        out.append((node, r))
    return out


@st.composite
def problems(draw: st.DrawFn, scenario: Scenario) -> Problem:
    cluster = Cluster(scenario)
    for node, r in draw(running_work()):
        if cluster.fits(node, r):
            cluster.allocate(node, r)
    specs = draw(st.lists(workload_specs(), min_size=1, max_size=6))
    workloads = tuple(PendingWorkload(f"w{i}", s) for i, s in enumerate(specs))
    return Problem(scenario, cluster, workloads, hour=draw(st.integers(0, 23)))


def params_for(policy: str) -> SolverParams:
    return SolverParams(policy=policy, time_limit_s=TIME_LIMIT_S)


@pytest.fixture(scope="module")
def tiny_problems(tiny: Scenario) -> st.SearchStrategy[Problem]:
    return problems(tiny)


def _state(cluster: Cluster) -> tuple[bytes, ...]:
    return tuple(
        np.ascontiguousarray(a).tobytes()
        for a in (cluster.free_cpu, cluster.free_mem, cluster.gpu_free, cluster.replicas_on)
    )


@pytest.mark.parametrize("policy", POLICIES)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_every_placement_holds_the_hard_constraints(tiny_problems, policy, data):
    problem = data.draw(tiny_problems)
    before = _state(problem.cluster)
    params = params_for(policy)
    result = solve(problem, params, seed=1)
    assert check_result(problem, result, cpu_on_gpu_nodes=params.cpu_on_gpu_nodes) == []
    assert _state(problem.cluster) == before, "solve changed the problem's cluster"


@pytest.mark.parametrize("policy", POLICIES)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_reported_objective_equals_its_recomputation_and_bounds_it(tiny_problems, policy, data):
    problem = data.draw(tiny_problems)
    params = params_for(policy)
    result = solve(problem, params, seed=1)
    recomputed = evaluate(problem, result.placements, params).objective
    assert math.isclose(result.objective, recomputed, rel_tol=1e-9, abs_tol=1e-9)
    if result.bound is not None:
        assert result.bound <= result.objective + 1e-9 * max(1.0, abs(result.objective))
        assert result.gap is not None and 0.0 <= result.gap <= 1.0


@pytest.mark.parametrize("policy", POLICIES)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_unplaced_workloads_carry_reasons(tiny_problems, policy, data):
    problem = data.draw(tiny_problems)
    result = solve(problem, params_for(policy), seed=1)
    sites = set(problem.scenario.site_names)
    for wid, u in result.unplaced.items():
        assert u.workload_id == wid
        assert u.summary, f"{wid}: no summary"
        assert u.reasons, f"{wid}: no reasons ({u.summary})"
        assert all(r.code and r.message and r.site in sites | {""} for r in u.reasons)


@pytest.mark.parametrize("topology", [Topology.GANG, Topology.UNSPECIFIED], ids=["gang", "plain"])
def test_unschedulable_workload_says_why_per_site(tiny, topology):
    # node-sized replicas: near holds 2, green 3; a GANG of 4 or 6 plain replicas never fit
    n = 4 if topology == Topology.GANG else 6
    spec = WorkloadSpec(tenant="t", resources=Resources(4000, 1024), replicas=n, topology=topology)
    problem = Problem(tiny, Cluster(tiny), (PendingWorkload("w0", spec),))
    for policy in POLICIES:
        u = solve(problem, params_for(policy)).unplaced["w0"]
        assert u.final
        assert {r.site for r in u.reasons} == {"near", "green"}, (policy, u)


@pytest.mark.parametrize("policy", POLICIES)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_same_seed_gives_the_same_placement(tiny_problems, policy, data):
    problem = data.draw(tiny_problems)
    first = solve(problem, params_for(policy), seed=7)
    again = solve(problem, params_for(policy), seed=7)
    assert first.placements == again.placements
    assert set(first.unplaced) == set(again.unplaced)
    assert first.objective == again.objective


@PROPERTY_SETTINGS
@given(data=st.data())
def test_valley_bound_is_below_the_objective_of_every_peers_placement(tiny_problems, data):
    # every peer's placement is feasible, so a valid lower bound cannot exceed its objective
    problem = data.draw(tiny_problems)
    valley = solve(problem, params_for("valley"), seed=1)
    if valley.bound is None:
        return
    for policy in POLICIES:
        other = solve(problem, params_for(policy), seed=1)
        assert valley.bound <= other.objective + 1e-9 * max(1.0, other.objective), policy


def test_valley_joins_an_awake_node_when_that_is_cheapest(tiny):
    # near/cpu-0000 already runs work, so it draws idle power anyway: one more small replica
    # there costs its dynamic power only, less than waking an empty node in green
    cluster = Cluster(tiny)
    cluster.allocate(cluster.index["near/cpu-0000"], Resources(278, 100))
    spec = WorkloadSpec(tenant="t", resources=Resources(978, 251))
    problem = Problem(tiny, cluster, (PendingWorkload("w1", spec),), hour=12)
    first_fit = solve(problem, params_for("first-fit"))
    valley = solve(problem, params_for("valley"))
    assert [rp.node for rp in first_fit.placements["w1"]] == ["near/cpu-0000"]
    assert valley.objective <= first_fit.objective + 1e-9
