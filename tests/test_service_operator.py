"""``OperatorService.CordonNodes`` over real gRPC: a cordoned node takes no new replicas (what
it holds stays), uncordoning lets waiting work in, the cordon survives a restart, plans see it,
and a request naming what does not exist is refused naming it."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler._proto.valley.v1 import placement_pb2_grpc as pb_grpc
from scheduler.domain import Scenario
from tests.test_service_support import PENDING, PLACED, Client, cpu_spec, serve, until

NEAR = ["near"]


def cordon(client: Client, nodes: list[str], cordoned: bool = True, site: str = "") -> list[str]:
    operator = pb_grpc.OperatorServiceStub(client.channel)
    resp = operator.CordonNodes(
        pb.CordonNodesRequest(nodes=nodes, site=site, cordoned=cordoned), timeout=10
    )
    return [n.name for n in resp.nodes if n.cordoned]


def cordoned_nodes(client: Client) -> set[str]:
    sites = client.cluster.ListSites(pb.ListSitesRequest(include_nodes=True), timeout=10)
    return {n.name for s in sites.sites for n in s.nodes if n.cordoned}


def test_a_cordoned_node_takes_nothing_new_and_uncordoning_lets_waiting_work_in(
    tiny: Scenario, tmp_path: Path
) -> None:
    with serve(tiny, tmp_path) as (_, client):
        (held,) = client.submit([cpu_spec(1, name="held", allowed_sites=NEAR)])
        until(lambda: client.get(held.id).state == PLACED, 30, "placed")
        node = client.get(held.id).placements[0].node
        other = next(n for n in ("near/cpu-0000", "near/cpu-0001") if n != node)
        assert cordon(client, [node]) == [node]
        assert cordoned_nodes(client) == {node}
        # near has two 4-core nodes: with one cordoned, one 3-core job fits and one waits
        jobs = client.submit([cpu_spec(3, name=f"j{i}", allowed_sites=NEAR) for i in range(2)])
        until(
            lambda: all(client.get(w.id).reason or client.get(w.id).state == PLACED for w in jobs),
            30,
            "both tried",
        )
        states = {w.id: client.get(w.id) for w in jobs}
        placed = [w for w in states.values() if w.state == PLACED]
        assert len(placed) == 1 and placed[0].placements[0].node == other
        waiting = next(w for w in states.values() if w.state == PENDING)
        assert client.get(held.id).state == PLACED  # what the cordoned node held stays
        assert cordon(client, [node], cordoned=False) == []
        until(lambda: client.get(waiting.id).state == PLACED, 30, "the waiting job placed")
        assert client.get(waiting.id).placements[0].node == node
        assert cordoned_nodes(client) == set()


def test_a_cordon_survives_a_restart_and_plans_see_it(tiny: Scenario, tmp_path: Path) -> None:
    with serve(tiny, tmp_path) as (_, client):
        assert sorted(cordon(client, [], site="near")) == ["near/cpu-0000", "near/cpu-0001"]
    with serve(tiny, tmp_path) as (_, client):
        assert cordoned_nodes(client) == {"near/cpu-0000", "near/cpu-0001"}
        planned = client.placement.PlanWorkloads(
            pb.SubmitWorkloadsRequest(workloads=[cpu_spec(1, allowed_sites=NEAR)]), timeout=30
        ).workloads[0]
        assert planned.state == PENDING
        (w,) = client.submit([cpu_spec(1, name="anywhere")])
        until(lambda: client.get(w.id).state == PLACED, 30, "placed")
        assert client.get(w.id).placements[0].site == "green"


def test_cordoning_what_does_not_exist_names_it_and_changes_nothing(
    tiny: Scenario, tmp_path: Path
) -> None:
    with serve(tiny, tmp_path) as (_, client):
        for request, field in (
            (pb.CordonNodesRequest(nodes=["near/cpu-0000", "nowhere/x"]), "nodes[1]"),
            (pb.CordonNodesRequest(site="mars"), "site"),
            (pb.CordonNodesRequest(), "nodes"),
        ):
            with pytest.raises(grpc.RpcError) as e:
                pb_grpc.OperatorServiceStub(client.channel).CordonNodes(request, timeout=10)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert (e.value.details() or "").startswith(field)
        assert cordoned_nodes(client) == set()
