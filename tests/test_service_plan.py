"""``PlanWorkloads`` over real gRPC: a dry run shows where workloads would go now, what they
would cost, or why not, on the cluster as it is, and stores nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler.domain import Scenario
from scheduler.service.planning import MAX_PLAN_REPLICAS
from tests.test_service_support import (
    PENDING,
    PLACED,
    UNSCHEDULABLE,
    Client,
    cpu_spec,
    serve,
    until,
)


@pytest.fixture
def client(tiny: Scenario, tmp_path: Path) -> Iterator[Client]:
    with serve(tiny, tmp_path) as (_, c):
        yield c


@pytest.fixture(scope="module")
def empty(tiny: Scenario, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """One server that only plans (plans store nothing: the tests that say so check it) for the
    module's tests on an empty cluster: starting a server per test costs its solver process's
    start-up."""
    with serve(tiny, Path(tmp_path_factory.mktemp("plans"))) as (_, c):
        yield c


def plan(client: Client, specs: list[pb.WorkloadSpec]) -> list[pb.Workload]:
    resp = client.placement.PlanWorkloads(pb.SubmitWorkloadsRequest(workloads=specs), timeout=30)
    return list(resp.workloads)


def test_a_plan_shows_placements_and_cost_and_stores_nothing(empty: Client) -> None:
    planned = plan(empty, [cpu_spec(1, name="web", replicas=2), cpu_spec(0.5, name="job")])
    assert [w.spec.name for w in planned] == ["web", "job"]
    for w in planned:
        assert w.state == PLACED and w.id == ""
        assert len(w.placements) == (w.spec.replicas or 1)
        assert all(p.node for p in w.placements)
        assert w.cost.energy_cny_per_hour > 0 and w.cost.power_watts > 0
    assert empty.all_workloads() == []


def test_a_plan_sees_the_capacity_placed_work_holds(client: Client) -> None:
    near = ["near"]
    # near has two 4-core nodes: fill them, then plan one more core pinned to near
    for w in client.submit([cpu_spec(4, name=f"fill-{i}", allowed_sites=near) for i in range(2)]):
        until(lambda w=w: client.get(w.id).state == PLACED, 30, "the fill placed")
    (late,) = plan(client, [cpu_spec(1, name="late", allowed_sites=near)])
    assert late.state == PENDING and late.reason
    (anywhere,) = plan(client, [cpu_spec(1, name="anywhere")])
    assert anywhere.state == PLACED and anywhere.placements[0].site == "green"


def test_a_workload_that_can_never_fit_plans_as_unschedulable_with_why(empty: Client) -> None:
    (huge,) = plan(empty, [cpu_spec(64, name="huge")])
    assert huge.state == UNSCHEDULABLE and huge.reason


def test_an_invalid_plan_names_the_field_and_an_oversized_one_the_limit(empty: Client) -> None:
    with pytest.raises(grpc.RpcError) as bad:
        plan(empty, [cpu_spec(1), cpu_spec(-1)])
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (bad.value.details() or "").startswith("workloads[1].resources.cpu_millis")
    many = MAX_PLAN_REPLICAS // 2 + 1
    with pytest.raises(grpc.RpcError) as big:
        plan(empty, [cpu_spec(0.01, replicas=many), cpu_spec(0.01, replicas=many)])
    assert big.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"at most {MAX_PLAN_REPLICAS} replicas" in (big.value.details() or "")
    assert empty.all_workloads() == []
