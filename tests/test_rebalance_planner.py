"""``plan_rebalance`` on hand-made clusters of the tiny scenario (near: 2 dear CPU nodes;
green: 3 cheap CPU nodes and a GPU node): what it moves, and where."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from scheduler.domain import (
    Cluster,
    Resources,
    Scenario,
    Topology,
    Workload,
    WorkloadKind,
    WorkloadSpec,
    WorkloadState,
)
from scheduler.loop.draining import plan_rebalance
from scheduler.solver import Problem, SolverParams, greedy


def running_on(
    cluster: Cluster, scenario: Scenario, wid: str, node: str, cores: int = 1, **kw: object
) -> Workload:
    kw.setdefault("kind", WorkloadKind.BATCH)
    resources = Resources(1000 * cores, 1024 * cores)
    spec = WorkloadSpec(tenant="t", resources=resources, **kw)  # type: ignore[arg-type]
    n = cluster.index[node]
    gpus = cluster.allocate(n, spec.resources)
    placement = greedy.placement(cluster, scenario, spec, 0, n, gpus)
    return Workload(wid, spec, WorkloadState.PLACED, (placement,))


def test_work_that_may_run_anywhere_moves_from_the_dear_site_to_a_sleeping_cheap_node(
    tiny: Scenario,
) -> None:
    cluster = Cluster(tiny)
    w = running_on(cluster, tiny, "w", "near/cpu-0000")
    plan = plan_rebalance(Problem(tiny, cluster, (), hour=12, month=1), SolverParams(), [w])
    (move,) = plan.moves
    assert move.from_node == "near/cpu-0000" and move.to_node.startswith("green/")
    assert plan.objective(plan.cost_after) < plan.objective(plan.cost_before)
    assert cluster.replicas_on[cluster.index["near/cpu-0000"]] == 1  # the caller's: unchanged


def test_work_held_to_the_dear_site_stays_there(tiny: Scenario) -> None:
    cluster = Cluster(tiny)
    w = running_on(cluster, tiny, "w", "near/cpu-0000", allowed_sites=("near",))
    plan = plan_rebalance(Problem(tiny, cluster, (), hour=12, month=1), SolverParams(), [w])
    assert plan.moves == [] and plan.cost_after == plan.cost_before


NOW = datetime(2025, 7, 1, 4, 0, tzinfo=UTC)


def started(w: Workload, minutes_ago: int) -> Workload:
    at = NOW - timedelta(minutes=minutes_ago)
    return replace(w, placements=tuple(replace(p, start_time=at) for p in w.placements))


def test_the_move_budget_goes_first_to_the_node_whose_work_runs_longest(tiny: Scenario) -> None:
    now = NOW
    cluster = Cluster(tiny)

    hour = {"duration_s": 3600}
    # green/cpu-0000 holds three jobs with 20 minutes left; cpu-0001 one with 5 minutes left,
    # cpu-0002 one with three hours left: emptying cpu-0002 saves the most per move
    holders = [
        started(running_on(cluster, tiny, f"r{i}", "green/cpu-0000", **hour), 40) for i in range(3)
    ]
    holders.append(started(running_on(cluster, tiny, "short", "green/cpu-0001", **hour), 55))
    long = running_on(cluster, tiny, "long", "green/cpu-0002", duration_s=4 * 3600)
    holders.append(started(long, 60))
    problem = Problem(tiny, cluster, (), hour=12, month=1, now=now)
    plan = plan_rebalance(problem, SolverParams(), holders, max_moves=1)
    (move,) = plan.moves
    assert move.workload_id == "long"


def test_a_service_is_not_moved_farther_from_its_users_than_its_latency_price_allows(
    tiny: Scenario,
) -> None:
    def moves(latency_price: float) -> list[str]:
        cluster = Cluster(tiny)
        w = running_on(
            cluster, tiny, "web", "near/cpu-0000", kind=WorkloadKind.SERVICE, origin="city"
        )
        params = SolverParams(latency_cny_per_ms_hour=latency_price)
        plan = plan_rebalance(Problem(tiny, cluster, (), hour=12, month=1), params, [w])
        return [m.to_node for m in plan.moves]

    assert [n.split("/")[0] for n in moves(0.0001)] == ["green"]  # the default: energy wins
    assert moves(10.0) == []  # 3 ms more at 10 CNY per ms-hour costs more than green saves


def test_a_moved_replica_goes_to_the_node_whose_work_outlasts_it_not_the_fullest(
    tiny: Scenario,
) -> None:
    cluster = Cluster(tiny)
    # cpu-0000 is the fullest (3 of 4 cores) but its work ends in 30 minutes; cpu-0001's runs
    # 6 hours more, cpu-0002's 8: cpu-0002 is emptied first, onto cpu-0001, which it keeps up
    # 2 hours longer (onto cpu-0000 it would add 7.5 hours of idle power)
    holders = [
        started(running_on(cluster, tiny, f"s{i}", "green/cpu-0000", duration_s=3600), 30)
        for i in range(3)
    ]
    holders.append(running_on(cluster, tiny, "y", "green/cpu-0001", duration_s=6 * 3600))
    holders.append(running_on(cluster, tiny, "z", "green/cpu-0002", duration_s=8 * 3600))
    holders = [started(w, 0) if w.id in ("y", "z") else w for w in holders]
    problem = Problem(tiny, cluster, (), hour=12, month=1, now=NOW)
    plan = plan_rebalance(problem, SolverParams(), holders, max_moves=1)
    (move,) = plan.moves
    assert (move.workload_id, move.to_node) == ("z", "green/cpu-0001")


def test_a_node_is_not_emptied_onto_nodes_it_would_keep_up_longer_than_it_saves(
    tiny: Scenario,
) -> None:
    cluster = Cluster(tiny)
    # cpu-0000's two replicas run 2 hours more; cpu-0001 and cpu-0002 each have one core free
    # and their work ends in 10 minutes. Emptying cpu-0000 saves 2 hours of its idle power
    # but keeps each of the other two up 1 h 50 min longer: 3 h 40 min of idle power added
    holders = [
        started(running_on(cluster, tiny, f"x{i}", "green/cpu-0000", duration_s=3 * 3600), 60)
        for i in range(2)
    ]
    for n in ("1", "2"):
        filler = running_on(cluster, tiny, f"f{n}", f"green/cpu-000{n}", cores=3, duration_s=3600)
        holders.append(started(filler, 50))
    problem = Problem(tiny, cluster, (), hour=12, month=1, now=NOW)
    plan = plan_rebalance(problem, SolverParams(), holders)
    assert [m for m in plan.moves if m.from_node == "green/cpu-0000"] == []


def test_work_placed_without_a_start_time_has_run_since_it_was_placed(tiny: Scenario) -> None:
    cluster = Cluster(tiny)
    # "old" was placed 3 h 50 min ago with no start time of its own (work that started when
    # placed): 10 minutes left, not its whole 4 hours; "new" has 2 hours left. The one move
    # goes to emptying the node whose work runs longest: new's
    old = running_on(cluster, tiny, "old", "green/cpu-0000", duration_s=4 * 3600)
    old = replace(old, placed_at=NOW - timedelta(hours=3, minutes=50))
    new = started(running_on(cluster, tiny, "new", "green/cpu-0001", duration_s=2 * 3600), 0)
    problem = Problem(tiny, cluster, (), hour=12, month=1, now=NOW)
    plan = plan_rebalance(problem, SolverParams(), [old, new], max_moves=1)
    (move,) = plan.moves
    assert move.workload_id == "new"


def gang_in_near(cluster: Cluster, tiny: Scenario, minutes_left: int) -> list[Workload]:
    """A two-replica GANG of 3 cores a replica, one replica on each near node (neither node
    has room for the other), started an hour ago with ``minutes_left`` to run."""
    spec = dict(topology=Topology.GANG, duration_s=3600 + 60 * minutes_left)
    a = running_on(cluster, tiny, "g", "near/cpu-0000", cores=3, **spec)  # type: ignore[arg-type]
    b = running_on(cluster, tiny, "g", "near/cpu-0001", cores=3, **spec)  # type: ignore[arg-type]
    second = replace(b.placements[0], replica=1)
    return [started(replace(a, placements=(a.placements[0], second)), 60)]


def test_a_gang_moves_whole_to_the_cheaper_site_when_no_replica_may_move_alone(
    tiny: Scenario,
) -> None:
    cluster = Cluster(tiny)
    holders = gang_in_near(cluster, tiny, minutes_left=240)
    problem = Problem(tiny, cluster, (), hour=12, month=1, now=NOW)
    plan = plan_rebalance(problem, SolverParams(), holders)
    assert sorted(m.replica for m in plan.moves) == [0, 1]
    reps, _ = plan.placements["g"]
    assert {p.site for p in reps} == {"green"} and len({p.node for p in reps}) == 2
    assert plan.objective(plan.cost_after) < plan.objective(plan.cost_before)


def test_a_gang_about_to_finish_is_not_moved_for_the_little_its_move_would_save(
    tiny: Scenario,
) -> None:
    cluster = Cluster(tiny)
    holders = gang_in_near(cluster, tiny, minutes_left=5)
    problem = Problem(tiny, cluster, (), hour=12, month=1, now=NOW)
    assert plan_rebalance(problem, SolverParams(), holders).moves == []
