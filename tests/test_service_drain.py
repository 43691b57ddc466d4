"""``OperatorService.DrainNodes`` over real gRPC: running replicas move off the drained nodes
where their rules allow (watchers see each move), what cannot move stays with why, a dry run
changes nothing; and the planner's topology rules on their own."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler._proto.valley.v1 import placement_pb2_grpc as pb_grpc
from scheduler.domain import (
    Cluster,
    ReplicaPlacement,
    Resources,
    Scenario,
    Topology,
    Workload,
    WorkloadSpec,
    WorkloadState,
)
from scheduler.loop.draining import plan_drain
from scheduler.solver import Problem, SolverParams
from tests.test_service_support import PLACED, Client, Watching, cpu_spec, serve, until

NEAR = ["near"]


def drain(client: Client, nodes: list[str], dry_run: bool = False) -> pb.MovePlan:
    return pb_grpc.OperatorServiceStub(client.channel).DrainNodes(
        pb.DrainNodesRequest(nodes=nodes, dry_run=dry_run), timeout=30
    )


def placed(client: Client, specs: list[pb.WorkloadSpec]) -> list[pb.Workload]:
    ws = client.submit(specs)
    for w in ws:
        until(lambda w=w: client.get(w.id).state == PLACED, 30, "placed")
    return [client.get(w.id) for w in ws]


def nodes_of(client: Client, wid: str) -> list[str]:
    return [p.node for p in client.get(wid).placements]


def test_a_drain_moves_running_replicas_off_and_watchers_see_each_move(
    tiny: Scenario, tmp_path: Path
) -> None:
    with serve(tiny, tmp_path) as (_, client):
        (a, b) = placed(client, [cpu_spec(1, name=f"j{i}", allowed_sites=NEAR) for i in range(2)])
        node = a.placements[0].node
        on_node = sorted(w.id for w in (a, b) if w.placements[0].node == node)
        watching = Watching(client, timeout=30)
        seen = watching.seen
        plan = drain(client, [node])
        assert sorted(m.workload_id for m in plan.moves) == on_node
        assert all(m.from_node == node and m.to_node.startswith("near/") for m in plan.moves)
        assert not plan.stuck
        for wid in on_node:
            assert nodes_of(client, wid) != [node] and nodes_of(client, wid)[0].startswith("near/")
        until(lambda: len(seen) >= len(on_node), 20, "the move events")
        watching.stop()
        moved = {e.workload.id: e for e in seen}
        for wid in on_node:
            e = moved[wid]
            assert e.previous_state == e.workload.state == PLACED
            assert e.workload.placements[0].node != node
        sites = client.cluster.ListSites(pb.ListSitesRequest(include_nodes=True), timeout=10)
        (n,) = [n for s in sites.sites for n in s.nodes if n.name == node]
        assert n.cordoned and n.allocated.cpu_millis == 0


def test_a_replica_with_nowhere_to_go_stays_with_why_and_a_dry_run_changes_nothing(
    tiny: Scenario, tmp_path: Path
) -> None:
    with serve(tiny, tmp_path) as (_, client):
        # near's two 4-core nodes each hold a 3-core job pinned to near: neither can move
        ws = placed(client, [cpu_spec(3, name=f"big{i}", allowed_sites=NEAR) for i in range(2)])
        node = ws[0].placements[0].node
        dry = drain(client, [node], dry_run=True)
        assert not dry.moves and [x.workload_id for x in dry.stuck] == [ws[0].id]
        assert dry.stuck[0].node == node and "room" in dry.stuck[0].reason
        sites = client.cluster.ListSites(pb.ListSitesRequest(include_nodes=True), timeout=10)
        assert not any(n.cordoned for s in sites.sites for n in s.nodes)  # dry: not cordoned
        plan = drain(client, [node])
        assert not plan.moves and len(plan.stuck) == 1
        assert nodes_of(client, ws[0].id) == [node]  # it stays, PLACED
        assert client.get(ws[0].id).state == PLACED


def test_a_dry_run_lists_the_move_and_moves_nothing(tiny: Scenario, tmp_path: Path) -> None:
    with serve(tiny, tmp_path) as (_, client):
        (w,) = placed(client, [cpu_spec(3, name="flex", allowed_sites=NEAR)])
        node = w.placements[0].node
        dry = drain(client, [node], dry_run=True)
        assert [(m.workload_id, m.from_node) for m in dry.moves] == [(w.id, node)]
        assert nodes_of(client, w.id) == [node]
        assert dry.cost_before.power_watts > 0


def test_drain_needs_the_operator_role_and_names_unknown_nodes(
    tiny: Scenario, tmp_path: Path
) -> None:
    with serve(tiny, tmp_path) as (_, client):
        with pytest.raises(grpc.RpcError) as e:
            drain(client, ["near/cpu-0000", "nowhere"])
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (e.value.details() or "").startswith("nodes[1]")


# ----------------------------------------------------------------------------- the planner


def _holder(wid: str, spec: WorkloadSpec, nodes: list[str], cluster: Cluster) -> Workload:
    reps = tuple(ReplicaPlacement(i, n.split("/")[0], n) for i, n in enumerate(nodes))
    for p in reps:
        cluster.allocate(cluster.index[p.node], spec.resources)
    return Workload(wid, spec, WorkloadState.PLACED, reps)


def test_the_planner_keeps_a_gangs_site_and_a_spreads_sites(tiny: Scenario) -> None:
    cluster = Cluster(tiny)
    r = Resources(1000, 1024)
    gang = WorkloadSpec(tenant="t", resources=r, replicas=2, topology=Topology.GANG)
    spread = WorkloadSpec(
        tenant="t", resources=r, replicas=2, topology=Topology.SPREAD, min_sites=2
    )
    holders = [
        _holder("g", gang, ["near/cpu-0000", "near/cpu-0000"], cluster),
        _holder("s", spread, ["near/cpu-0000", "green/cpu-0000"], cluster),
    ]
    problem = Problem(tiny, cluster, ())
    plan = plan_drain(problem, SolverParams(), holders, ["near/cpu-0000"])
    to = {(m.workload_id, m.replica): m.to_node for m in plan.moves}
    assert to[("g", 0)] == to[("g", 1)] == "near/cpu-0001"  # a gang stays in its site
    assert to[("s", 0)] == "near/cpu-0001"  # the spread keeps its near replica in near
    assert problem.cluster.free_cpu[cluster.index["near/cpu-0000"]] == 1000  # not changed


def test_moves_leave_the_room_reservations_will_need(tiny: Scenario) -> None:
    from datetime import UTC, datetime

    from scheduler.domain import Timeline, hour_of
    from scheduler.loop.draining import plan_rebalance

    now = datetime(2025, 7, 1, 4, 0, tzinfo=UTC)
    cluster = Cluster(tiny)
    job = WorkloadSpec(tenant="t", resources=Resources(1000, 1024), allowed_sites=("near",))
    holders = [
        _holder("a", job, ["near/cpu-0000"], cluster),
        _holder("b", job, ["near/cpu-0001"], cluster),
    ]
    free = Problem(tiny, cluster, (), now=now)
    assert len(plan_rebalance(free, SolverParams(), holders).moves) == 1  # one node empties
    tl = Timeline(cluster, hour_of(now))
    h = hour_of(now)
    for i, node in enumerate(("near/cpu-0000", "near/cpu-0001")):
        n = cluster.index[node]
        tl.hold("ab"[i], [n], 1000, 1024, h, None)  # what runs there now, without an end
        tl.hold(f"later{i}", [n], 3000, 1024, h + 2, h + 4, reserved=True)
    held = Problem(tiny, cluster, (), now=now, timeline=tl)
    assert not plan_rebalance(held, SolverParams(), holders).moves  # each node's rest is booked


def test_a_moved_replica_keeps_its_start_time(tiny: Scenario) -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime(2025, 7, 1, 4, 0, tzinfo=UTC)
    started = now - timedelta(hours=1)  # a reservation that started an hour ago
    cluster = Cluster(tiny)
    job = WorkloadSpec(tenant="t", resources=Resources(1000, 1024), allowed_sites=("near",))
    cluster.allocate(cluster.index["near/cpu-0000"], job.resources)
    w = Workload(
        "d",
        job,
        WorkloadState.PLACED,
        (ReplicaPlacement(0, "near", "near/cpu-0000", start_time=started),),
        placed_at=started - timedelta(hours=5),
    )
    plan = plan_drain(Problem(tiny, cluster, (), now=now), SolverParams(), [w], ["near/cpu-0000"])
    (rep,) = plan.placements["d"][0]
    assert rep.node == "near/cpu-0001" and rep.start_time == started
