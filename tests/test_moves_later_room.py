"""Drains and rebalances leave reservations the room they will need later, hour by hour, as the
plan goes: a replica moved off a node gives back only the hours it would have run there, one
moved onto a node needs the room of the hours of the rest of its run (so one that ends before a
reservation starts may use the room the reservation takes later), and two moved onto one GPU
both count against what a reservation holds of it later."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from scheduler.domain import (
    Cluster,
    DrainPlan,
    ReplicaPlacement,
    Resources,
    Scenario,
    Timeline,
    Workload,
    WorkloadSpec,
    WorkloadState,
    hour_of,
    parse_scenario,
)
from scheduler.loop.draining import plan_drain, plan_rebalance
from scheduler.solver import Problem, SolverParams
from tests.conftest import TINY

NOW = datetime(2025, 7, 1, 4, 0, tzinfo=UTC)
H = hour_of(NOW)


def running(
    cluster: Cluster,
    tl: Timeline,
    wid: str,
    node: str,
    r: Resources,
    *,
    duration_s: int = 0,
    minutes_ago: int = 0,
) -> Workload:
    """A workload running on ``node`` (held by ``cluster`` and ``tl`` until it ends)."""
    n = cluster.index[node]
    gpus = cluster.allocate(n, r)
    end = H + 1 if duration_s else None  # the short ones here end within this hour
    share = 1000 if r.gpus else r.gpu_millis
    tl.hold(wid, [n], r.cpu_millis, r.memory_mib, H, end, gpus=[gpus], gpu_share=share)
    at = NOW - timedelta(minutes=minutes_ago)
    site = node.split("/")[0]
    rep = ReplicaPlacement(0, site, node, 0.0, gpus, start_time=at)
    spec = WorkloadSpec(tenant="t", resources=r, duration_s=duration_s)
    return Workload(wid, spec, WorkloadState.PLACED, (rep,))


def cores(millis: int) -> Resources:
    return Resources(millis, 1024)


def test_a_node_emptied_by_a_rebalance_takes_no_more_than_its_reservation_leaves(
    tiny: Scenario,
) -> None:
    cluster = Cluster(tiny)
    tl = Timeline(cluster, H)
    # green/cpu-0000: x (1.5 cores) ends in 30 minutes; a reservation takes 3 of its 4 cores
    # from 2 hours on: 1 core is left to put there for good. Emptying it onto cpu-0001 pays;
    # y (2 cores, in the dear site) does not fit a powered node, then goes to a cheap one:
    # not cpu-0000, whose room now (x gone) is no room when the reservation starts
    holders = [
        running(cluster, tl, "x", "green/cpu-0000", cores(1500), duration_s=3600, minutes_ago=30),
        running(cluster, tl, "w", "green/cpu-0001", cores(2500)),
        running(cluster, tl, "y", "near/cpu-0000", cores(2000)),
    ]
    tl.hold("later", [cluster.index["green/cpu-0000"]], 3000, 1024, H + 2, H + 4, reserved=True)
    problem = Problem(tiny, cluster, (), now=NOW, timeline=tl)
    plan = plan_rebalance(problem, SolverParams(), holders)
    to = {m.workload_id: m.to_node for m in plan.moves}
    assert to["x"] == "green/cpu-0001"  # the node empties
    assert to.get("y") != "green/cpu-0000"


def test_two_replicas_drained_onto_one_gpu_leave_a_reservation_its_share(tiny: Scenario) -> None:
    two_gpu_nodes = TINY.replace("count = 1\ncpu_millis = 8000", "count = 2\ncpu_millis = 8000")
    scenario = parse_scenario(two_gpu_nodes, "two-gpu-nodes.toml")
    cluster = Cluster(scenario)
    tl = Timeline(cluster, H)
    half = Resources(1000, 1024, gpu_millis=500)
    holders = [running(cluster, tl, w, "green/gpu-0000", half) for w in ("a", "b")]
    # on gpu-0001, a reservation holds half of GPU 0 and all of GPU 1 from 2 hours on: half a
    # GPU is left there for good, room for one of the two, not both
    dst = cluster.index["green/gpu-0001"]
    tl.hold("later0", [dst], 1000, 1024, H + 2, H + 4, True, gpus=[(0,)], gpu_share=500)
    tl.hold("later1", [dst], 1000, 1024, H + 2, H + 4, True, gpus=[(1,)], gpu_share=1000)
    problem = Problem(scenario, cluster, (), now=NOW, timeline=tl)
    plan = plan_drain(problem, SolverParams(), holders, ["green/gpu-0000"])
    assert len(plan.moves) == 1 and len(plan.stuck) == 1
    assert plan.stuck[0].reason == "no node its rules allow has room"


def rebalance_beside_reservations(tiny: Scenario, x_duration_s: int) -> DrainPlan:
    """green/cpu-0001 runs w (2.5 cores, for good) and holds a reservation of its other 1.5
    cores from 2 hours on; green/cpu-0000 runs x (1 core, for ``x_duration_s``, started 30
    minutes ago; 0: for good) and holds a reservation of 2 cores from 2 hours on, so w cannot
    move there. The rebalance of that."""
    cluster = Cluster(tiny)
    tl = Timeline(cluster, H)
    holders = [
        running(cluster, tl, "x", "green/cpu-0000", cores(1000), duration_s=x_duration_s,
                minutes_ago=30),
        running(cluster, tl, "w", "green/cpu-0001", cores(2500)),
    ]  # fmt: skip
    tl.hold("later", [cluster.index["green/cpu-0001"]], 1500, 1024, H + 2, H + 4, reserved=True)
    tl.hold("also", [cluster.index["green/cpu-0000"]], 2000, 1024, H + 2, H + 4, reserved=True)
    return plan_rebalance(Problem(tiny, cluster, (), now=NOW, timeline=tl), SolverParams(), holders)


def test_a_replica_ending_before_a_reservation_starts_moves_onto_the_node_it_reserves(
    tiny: Scenario,
) -> None:
    # x ends within this hour: it fits on cpu-0001 until then, so emptying cpu-0000 onto it
    # powers a node down and takes nothing the reservation needs
    plan = rebalance_beside_reservations(tiny, x_duration_s=3600)
    assert [(m.workload_id, m.to_node) for m in plan.moves] == [("x", "green/cpu-0001")]
    assert plan.cost_after.power_watts < plan.cost_before.power_watts


def test_a_replica_running_for_good_does_not_move_onto_room_a_reservation_takes_later(
    tiny: Scenario,
) -> None:
    # the 1.5 cores free on cpu-0001 now are the reservation's from 2 hours on: x stays
    assert rebalance_beside_reservations(tiny, x_duration_s=0).moves == []
