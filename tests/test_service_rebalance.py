"""``OperatorService.Rebalance`` over real gRPC: as work completes a cluster drifts from
consolidated to scattered; a rebalance empties the least used powered nodes onto others where
that lowers the cost, within its move budget, and a dry run changes nothing."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler._proto.valley.v1 import placement_pb2_grpc as pb_grpc
from scheduler.cli.commands import move_plan_note
from scheduler.domain import Scenario
from tests.test_service_support import PLACED, Client, cpu_spec, serve, until

NEAR = ["near"]


def rebalance(client: Client, dry_run: bool = False, max_moves: int = 0) -> pb.MovePlan:
    return pb_grpc.OperatorServiceStub(client.channel).Rebalance(
        pb.RebalanceRequest(dry_run=dry_run, max_moves=max_moves), timeout=30
    )


def place_one(client: Client, spec: pb.WorkloadSpec) -> pb.Workload:
    (w,) = client.submit([spec])
    until(lambda: client.get(w.id).state == PLACED, 30, "placed")
    return client.get(w.id)


def scattered(client: Client) -> tuple[pb.Workload, pb.Workload]:
    """Two 1-core jobs on near's two nodes, each alone: the 3-core jobs that kept them apart
    are cancelled."""
    big = [place_one(client, cpu_spec(3, name=f"big{i}", allowed_sites=NEAR)) for i in range(2)]
    assert {w.placements[0].node for w in big} == {"near/cpu-0000", "near/cpu-0001"}
    small = [place_one(client, cpu_spec(1, name=f"s{i}", allowed_sites=NEAR)) for i in range(2)]
    assert {w.placements[0].node for w in small} == {"near/cpu-0000", "near/cpu-0001"}
    for w in big:
        client.placement.CancelWorkload(pb.CancelWorkloadRequest(id=w.id), timeout=10)
    return small[0], small[1]


def powered(client: Client) -> set[str]:
    sites = client.cluster.ListSites(pb.ListSitesRequest(include_nodes=True), timeout=10)
    return {n.name for s in sites.sites for n in s.nodes if n.allocated.cpu_millis}


def test_a_rebalance_empties_a_node_onto_another_and_lowers_the_cost(
    tiny: Scenario, tmp_path: Path
) -> None:
    with serve(tiny, tmp_path) as (_, client):
        a, b = scattered(client)
        until(lambda: powered(client) == {"near/cpu-0000", "near/cpu-0001"}, 20, "the cancels")
        dry = rebalance(client, dry_run=True)
        assert len(dry.moves) == 1 and dry.objective_after < dry.objective_before
        assert powered(client) == {"near/cpu-0000", "near/cpu-0001"}  # a dry run moves nothing
        plan = rebalance(client)
        assert len(plan.moves) == 1
        assert plan.cost_after.power_watts < plan.cost_before.power_watts
        (move,) = plan.moves
        assert len(powered(client)) == 1 and move.to_node in powered(client)
        assert client.get(move.workload_id).placements[0].node == move.to_node
        assert {client.get(w.id).state for w in (a, b)} == {PLACED}
        assert not rebalance(client).moves  # nothing left to gain


def test_a_rebalance_keeps_within_its_move_budget_and_refuses_a_negative_one(
    tiny: Scenario, tmp_path: Path
) -> None:
    with serve(tiny, tmp_path) as (_, client):
        scattered(client)
        # each of the two nodes has one replica: a budget of 1 allows one node's moves
        assert len(rebalance(client, dry_run=True, max_moves=1).moves) == 1
        with pytest.raises(grpc.RpcError) as e:
            rebalance(client, max_moves=-1)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (e.value.details() or "").startswith("max_moves")


def test_a_rebalance_plan_carries_the_floor_of_the_running_work_and_its_gap(
    tiny: Scenario, tmp_path: Path
) -> None:
    with serve(tiny, tmp_path) as (_, client):
        scattered(client)
        until(lambda: len(powered(client)) == 2, 20, "the cancels")
        dry = rebalance(client, dry_run=True)
        assert dry.HasField("objective_bound")
        # the two 1-core jobs on one powered node is the best there is: after the move the
        # plan is at its floor, before it one node's idle draw above it
        assert 0 < dry.objective_bound <= dry.objective_after + 1e-9
        assert dry.objective_after - dry.objective_bound < 0.1 * (
            dry.objective_before - dry.objective_bound
        )
        assert "no placement of the running work does better than" in move_plan_note(dry, True)


def test_a_plan_at_its_floor_shows_a_gap_of_zero_not_minus_zero() -> None:
    # the bound may exceed the plan by rounding noise of the LP
    plan = pb.MovePlan(objective_before=13.13, objective_after=12.55, objective_bound=12.55 + 1e-9)
    assert "(gap 0.0%)" in move_plan_note(plan, True)
