"""``max_replicas_per_node`` and the SERVICE default (API.md, "Availability") below the API:
the spec's rule, validation, the store's codec, eligibility and the independent checker."""

from __future__ import annotations

from dataclasses import replace

import pytest

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler.bench.checker import check_placements
from scheduler.cli.tables import workload_detail
from scheduler.domain import (
    Cluster,
    ReasonCode,
    ReplicaPlacement,
    Resources,
    Scenario,
    ValidationError,
    WorkloadKind,
    WorkloadSpec,
)
from scheduler.service.convert import spec_from_proto, spec_to_proto
from scheduler.solver import POLICIES, PendingWorkload, Problem, SolverParams, solve
from scheduler.solver.explain import explain
from scheduler.solver.filters import eligibility
from scheduler.solver.objective import site_rates
from scheduler.store.codec import spec_from_json, spec_to_json

PARAMS = SolverParams()


def spec(replicas: int, kind: WorkloadKind = WorkloadKind.SERVICE, **kw: object) -> WorkloadSpec:
    return WorkloadSpec(
        tenant="t", resources=Resources(500, 256), replicas=replicas, kind=kind, **kw
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("replicas", "kind", "own", "limit"),
    [
        (3, WorkloadKind.SERVICE, 0, 2),  # ceil(3 / 2)
        (4, WorkloadKind.SERVICE, 0, 2),
        (2, WorkloadKind.SERVICE, 0, 1),
        (1, WorkloadKind.SERVICE, 0, 1),
        (5, WorkloadKind.BATCH, 0, 5),  # batch: no default
        (5, WorkloadKind.UNSPECIFIED, 0, 5),
        (5, WorkloadKind.BATCH, 2, 2),
        (4, WorkloadKind.SERVICE, 1, 1),  # its own limit replaces the default
        (4, WorkloadKind.SERVICE, 3, 3),
        (2, WorkloadKind.SERVICE, 9, 2),
    ],
)
def test_the_limit_per_node_is_the_specs_own_else_half_a_services_replicas(
    replicas: int, kind: WorkloadKind, own: int, limit: int
) -> None:
    s = spec(replicas, kind, max_replicas_per_node=own)
    assert s.replicas_per_node_limit == limit


def test_without_the_default_spread_only_the_specs_own_limit_counts() -> None:
    assert spec(4).limit_per_node(default_spread=False) == 4
    assert spec(4, max_replicas_per_node=1).limit_per_node(default_spread=False) == 1


def test_a_negative_limit_is_invalid_naming_the_field() -> None:
    with pytest.raises(ValidationError) as e:
        spec(2, max_replicas_per_node=-1).validate(field_prefix="workloads[3]")
    assert e.value.field == "workloads[3].max_replicas_per_node"


def test_a_limit_above_the_replicas_is_valid_and_limits_nothing() -> None:
    assert spec(2, max_replicas_per_node=5).validate().replicas_per_node_limit == 2


def test_the_store_keeps_the_limit_and_reads_rows_written_without_it() -> None:
    s = spec(4, max_replicas_per_node=1)
    assert spec_from_json(spec_to_json(s)) == s
    old = spec_to_json(spec(4)).replace(',"max_replicas_per_node":0', "")
    assert "max_replicas_per_node" not in old
    assert spec_from_json(old) == spec(4)


def test_more_replicas_than_eligible_nodes_times_the_limit_is_final_with_spread_node(
    tiny: Scenario,
) -> None:
    # near has 2 CPU nodes: 3 replicas, at most 1 a node, never fit there
    s = spec(3, max_replicas_per_node=1, allowed_sites=("near",))
    e = eligibility(tiny, Cluster(tiny), s, PARAMS)
    assert e.final_code == ReasonCode.SPREAD_NODE
    assert "max_replicas_per_node" in e.final_reason
    assert not eligibility(
        tiny, Cluster(tiny), spec(2, max_replicas_per_node=1), PARAMS
    ).final_reason


@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_reports_an_impossible_limit_as_final_spread_node(
    tiny: Scenario, policy: str
) -> None:
    s = spec(3, max_replicas_per_node=1, allowed_sites=("near",))
    problem = Problem(tiny, Cluster(tiny), (PendingWorkload("w0", s),))
    u = solve(problem, SolverParams(policy=policy, time_limit_s=0.5)).unplaced["w0"]
    assert u.final
    assert u.reasons[0].code == ReasonCode.SPREAD_NODE
    assert "max_replicas_per_node" in u.summary


def _rows(nodes: list[str]) -> list[ReplicaPlacement]:
    return [ReplicaPlacement(i, n.split("/")[0], n) for i, n in enumerate(nodes)]


def test_the_checker_finds_replicas_above_the_limit_on_one_node(tiny: Scenario) -> None:
    specs = {"own": spec(3, WorkloadKind.BATCH, max_replicas_per_node=1), "svc": spec(3)}
    placements = {
        "own": _rows(["green/cpu-0000", "green/cpu-0000", "green/cpu-0001"]),
        "svc": _rows(["near/cpu-0000"] * 3),
    }
    found = check_placements(tiny, specs, placements)
    assert sorted((v.workload, v.rule, v.node) for v in found) == [
        ("own", "spread_node", "green/cpu-0000"),
        ("svc", "spread_node", "near/cpu-0000"),
    ]
    # without the default only the spec's own limit is checked; batch work has no default
    assert [
        v.workload for v in check_placements(tiny, specs, placements, default_spread=False)
    ] == ["own"]
    batch = {"b": spec(3, WorkloadKind.BATCH)}
    assert check_placements(tiny, batch, {"b": _rows(["near/cpu-0000"] * 3)}) == []


def test_the_limit_survives_the_proto_both_ways() -> None:
    s = spec(4, max_replicas_per_node=1)
    out = pb.WorkloadSpec()
    spec_to_proto(s, out)
    assert out.max_replicas_per_node == 1
    assert spec_from_proto(out) == s


def test_valley_get_shows_the_limit_and_the_nodes_used() -> None:
    w = pb.Workload(id="w-1", state=2)
    w.spec.tenant, w.spec.replicas, w.spec.kind = "t", 3, 1  # a SERVICE of 3
    for i, node in enumerate(["near/cpu-0000", "near/cpu-0000", "near/cpu-0001"]):
        w.placements.add(replica=i, site="near", node=node)
    assert "per node:    at most 2 (the SERVICE default), on 2 nodes" in workload_detail(w)
    w.spec.max_replicas_per_node = 1
    assert "per node:    at most 1, on 2 nodes" in workload_detail(w)
    w.spec.kind = 2  # batch, no limit of its own: nothing to show
    w.spec.max_replicas_per_node = 0
    assert "per node" not in workload_detail(w)


def test_a_limit_that_blocks_a_placement_now_is_pending_with_spread_node(tiny: Scenario) -> None:
    # near/cpu-0001 is full: near/cpu-0000 alone has room for both replicas, but a SERVICE of
    # 2 may hold 1 a node, so it waits (not final: near has 2 nodes) and says why
    cluster = Cluster(tiny)
    cluster.allocate(cluster.index["near/cpu-0001"], Resources(4000, 1024))
    s = spec(2, allowed_sites=("near",))
    problem = Problem(tiny, cluster, (PendingWorkload("w0", s),))
    for policy in POLICIES:
        u = solve(problem, SolverParams(policy=policy, time_limit_s=0.5)).unplaced["w0"]
        assert not u.final
        assert ReasonCode.SPREAD_NODE in {r.code for r in u.reasons}, policy
        assert "max_replicas_per_node" in u.summary, policy
    e = explain(problem, s, eligibility(tiny, cluster, s, PARAMS), (), site_rates(problem))
    near = next(v for v in e.sites if v.site == "near")
    assert not near.feasible and near.reasons[0].code == ReasonCode.SPREAD_NODE
    # batch work may share the node
    assert (
        "w0"
        in solve(
            replace(
                problem, workloads=(PendingWorkload("w0", replace(s, kind=WorkloadKind.BATCH)),)
            )
        ).placements
    )
