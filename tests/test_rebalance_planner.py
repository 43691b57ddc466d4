"""``plan_rebalance`` on hand-made clusters of the tiny scenario (near: 2 dear CPU nodes;
green: 3 cheap CPU nodes and a GPU node): what it moves, and where."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from scheduler.domain import (
    Cluster,
    Resources,
    Scenario,
    Workload,
    WorkloadKind,
    WorkloadSpec,
    WorkloadState,
)
from scheduler.loop.draining import plan_rebalance
from scheduler.solver import Problem, SolverParams, greedy


def running_on(cluster: Cluster, scenario: Scenario, wid: str, node: str, **kw: object) -> Workload:
    kw.setdefault("kind", WorkloadKind.BATCH)
    spec = WorkloadSpec(tenant="t", resources=Resources(1000, 1024), **kw)  # type: ignore[arg-type]
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


def test_the_move_budget_goes_first_to_the_node_whose_work_runs_longest(tiny: Scenario) -> None:
    now = datetime(2025, 7, 1, 4, 0, tzinfo=UTC)
    cluster = Cluster(tiny)

    def started(w: Workload, minutes_ago: int) -> Workload:
        at = now - timedelta(minutes=minutes_ago)
        return replace(w, placements=tuple(replace(p, start_time=at) for p in w.placements))

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
