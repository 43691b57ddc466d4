"""Time shifting of GPU and GANG work: reservations hold the GPUs they will take, a GANG is
reserved whole (one site, one start) or not at all, and work placed now leaves reserved GPUs
alone. Two sites checkable by hand, each with GPU nodes of 2 GPUs; energy cheap from 00:00 to
06:00 local time and dear otherwise (``a`` a little cheaper than ``b``)."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.bench.checker import check_over_time
from scheduler.bench.day import SimClock
from scheduler.domain import (
    Cluster,
    ReplicaPlacement,
    Resources,
    Scenario,
    Topology,
    Workload,
    WorkloadKind,
    WorkloadSpec,
    WorkloadState,
    parse_scenario,
)
from scheduler.domain.forecast import hour_of, parse_forecast
from scheduler.domain.timeline import Timeline, hours_covering
from scheduler.loop import LoopConfig, SchedulingLoop
from scheduler.loop.allocation import Allocation, hold_in_time
from scheduler.loop.draining import plan_drain
from scheduler.solver import SolverParams, solve
from scheduler.store import Store
from tests.test_loop_support import store_fixture  # noqa: F401
from tests.test_time import MIDNIGHT, NOW, problem  # 20:10 local; cheap from 00:00

CHEAP = [0.2 if h < 6 else 1.0 for h in range(24)]


def _site(name: str, price: float, nodes: int) -> str:
    return f"""
[sites.{name}]
pue = 1.0
price_cny_per_kwh = {[p * price for p in CHEAP]}
carbon_kg_per_kwh = {[0.5] * 24}
latency_ms = {{ city = 1.0 }}
[[sites.{name}.pools]]
name = "gpu"
count = {nodes}
cpu_millis = 16000
memory_mib = 65536
gpus = 2
gpu_model = "A800"
idle_watts = 200.0
max_watts = 400.0
gpu_watts = 300.0
"""


def gpu_scenario(nodes_a: int = 1, nodes_b: int = 1) -> Scenario:
    text = 'name = "gpus"\norigins = ["city"]\ntimezone = "Asia/Shanghai"\n'
    text += _site("a", 1.0, nodes_a) + (_site("b", 1.1, nodes_b) if nodes_b else "")
    return parse_scenario(text, "gpus.toml")


PARAMS = SolverParams(num_workers=1, time_limit_s=2.0)


def gpu_job(
    gpus: int, hours: float, deadline_in_h: float | None, replicas: int = 1, **kw: object
) -> WorkloadSpec:
    return WorkloadSpec(
        tenant="t",
        resources=Resources(2000, 4096, gpus=gpus),
        replicas=replicas,
        kind=WorkloadKind.BATCH,
        duration_s=int(hours * 3600),
        deadline=None if deadline_in_h is None else NOW + timedelta(hours=deadline_in_h),
        **kw,  # type: ignore[arg-type]
    )


def test_a_deferrable_gpu_job_is_reserved_at_the_cheap_hour_holding_its_gpus() -> None:
    scenario = gpu_scenario()
    p = problem(scenario, gpu_job(1, 2, 20))
    result = solve(p, PARAMS)
    (rep,) = result.placements["w0"]
    start = rep.start_time
    # within the cheap hours (00:00-06:00 local, all equally cheap), at the cheaper site
    assert start is not None and MIDNIGHT <= start <= MIDNIGHT + timedelta(hours=4)
    assert rep.site == "a" and len(rep.gpu_indices) == 1
    tl = Timeline(p.cluster, hour_of(NOW))
    spec = p.workloads[0].spec
    hold_in_time(tl, p.cluster, "w0", spec, (rep,), start.timestamp(), True)
    node = p.cluster.index[rep.node]
    free = tl.hourly_gpu_free()[int(tl.gpu_row[node]), rep.gpu_indices[0]]
    first, end = hours_covering(start.timestamp(), spec.duration_s)
    assert end is not None
    held = [h - tl.base for h in range(first, end)]
    assert [int(free[c]) for c in held] == [0, 0]
    assert int(free[held[0] - 1]) == int(free[held[-1] + 1]) == 1000


def test_a_deferrable_gpu_job_bound_to_the_dearer_site_is_reserved_there() -> None:
    p = problem(gpu_scenario(), gpu_job(1, 2, 20, allowed_sites=("b",)))
    (rep,) = solve(p, PARAMS).placements["w0"]
    assert rep.site == "b" and rep.start_time is not None and rep.start_time >= MIDNIGHT


def test_work_placed_now_never_takes_the_gpus_a_reservation_holds() -> None:
    scenario = gpu_scenario(1, 0)
    cluster = Cluster(scenario)
    tl = Timeline(cluster, hour_of(NOW))
    midnight = hour_of(MIDNIGHT)
    tl.hold("reserved", [0], 2000, 4096, midnight, midnight + 2, True, gpus=[(0,)], gpu_share=1000)
    service = WorkloadSpec(
        tenant="t", resources=Resources(2000, 4096, gpus=1), kind=WorkloadKind.SERVICE
    )
    result = solve(problem(scenario, service, service, timeline=tl), PARAMS)
    placed = [r for reps in result.placements.values() for r in reps]
    assert [r.gpu_indices for r in placed] == [(1,)]  # GPU 0 is reserved from midnight
    assert len(result.unplaced) == 1


def test_a_gang_is_reserved_whole_on_one_site_at_one_start() -> None:
    # a holds one of its two nodes' GPUs from midnight for 2 h, b one of its two for ever:
    # the gang (2 replicas x 2 GPUs: two whole nodes) fits only in a, from 02:00
    scenario = gpu_scenario(2, 2)
    cluster = Cluster(scenario)
    tl = Timeline(cluster, hour_of(NOW))
    midnight = hour_of(MIDNIGHT)
    tl.hold("a-later", [0], 2000, 4096, midnight, midnight + 2, True, gpus=[(0, 1)], gpu_share=1000)
    b0 = cluster.index[scenario.site("b").pools[0].node_name(0)]
    cluster.allocate(b0, Resources(2000, 4096, gpus=2), (0, 1))
    tl.hold("b-now", [b0], 2000, 4096, hour_of(NOW), None, gpus=[(0, 1)], gpu_share=1000)
    gang = gpu_job(2, 3, 20, replicas=2, topology=Topology.GANG)
    result = solve(problem(scenario, gang, timeline=tl), PARAMS)
    reps = result.placements["w0"]
    assert {r.site for r in reps} == {"a"}
    assert len({r.start_time for r in reps}) == 1
    start = reps[0].start_time
    assert start is not None and start >= MIDNIGHT + timedelta(hours=2)
    assert len({r.node for r in reps}) == 2


def test_a_gang_that_fits_no_site_whole_in_time_is_never_split() -> None:
    # one free node per site in every hour: the gang needs two in one site
    scenario = gpu_scenario(2, 2)
    cluster = Cluster(scenario)
    tl = Timeline(cluster, hour_of(NOW))
    for site in ("a", "b"):
        node = cluster.index[scenario.site(site).pools[0].node_name(0)]
        cluster.allocate(node, Resources(2000, 4096, gpus=2), (0, 1))
        tl.hold(site, [node], 2000, 4096, hour_of(NOW), None, gpus=[(0, 1)], gpu_share=1000)
    gang = gpu_job(2, 3, 20, replicas=2, topology=Topology.GANG)
    result = solve(problem(scenario, gang, timeline=tl), PARAMS)
    assert "w0" not in result.placements and "w0" in result.unplaced


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    jobs=st.lists(
        st.tuples(
            st.integers(1, 2),  # GPUs per replica
            st.integers(1, 2),  # replicas
            st.integers(1, 6),  # hours
            st.integers(0, 20),  # slack hours
        ),
        min_size=1,
        max_size=6,
    )
)
def test_deferred_gpu_and_gang_work_meets_every_deadline_and_rule_and_the_bound_holds(
    jobs: list[tuple[int, int, int, int]],
) -> None:
    scenario = gpu_scenario(2, 1)
    gang = Topology.GANG
    specs = [
        gpu_job(g, h, h + slack + 0.5, replicas=n, topology=gang if n > 1 else Topology.UNSPECIFIED)
        for g, n, h, slack in jobs
    ]
    p = problem(scenario, *specs)
    result = solve(p, PARAMS)
    by_id = {w.id: w.spec for w in p.workloads}
    spans = {}
    for wid, reps in result.placements.items():
        spec = by_id[wid]
        assert spec.deadline is not None
        for r in reps:
            start = r.start_time or NOW
            assert start + timedelta(seconds=spec.duration_s) <= spec.deadline
        spans[wid] = [
            ((r.start_time or NOW).timestamp(), (r.start_time or NOW).timestamp() + spec.duration_s)
            for r in reps
        ]
    assert check_over_time(scenario, by_id, result.placements, spans) == []
    # the joint model's LP covers GPU rows per hour and GANG starts: still a bound
    assert result.bound is None or result.bound <= result.objective + 1e-6


def test_a_reserved_gpu_job_takes_the_gpus_it_holds_when_it_starts() -> None:
    scenario = gpu_scenario(1, 0)
    p = problem(scenario, gpu_job(1, 2, 20))
    (rep,) = solve(p, PARAMS).placements["w0"]
    assert rep.start_time is not None
    w = Workload("w0", p.workloads[0].spec, WorkloadState.PLACED, (rep,), placed_at=NOW)
    a = Allocation(scenario)
    a.advance(NOW)
    assert a.restore(w, NOW)
    assert (a.cluster.gpu_free == 1000).all()  # a reservation holds no GPU now
    assert [x.id for x in a.start_due(rep.start_time)] == ["w0"]
    node = a.cluster.index[rep.node]
    assert [int(a.cluster.gpu_free[node, g]) for g in rep.gpu_indices] == [0]


def test_a_gpu_reservation_is_planned_again_and_takes_its_gpus_when_it_starts(
    store: Store,
) -> None:
    scenario = gpu_scenario(1, 0)
    sim = SimClock(NOW)
    loop = SchedulingLoop(
        store,
        scenario,
        params=SolverParams(num_workers=1),
        config=LoopConfig(solver_process=False, solve_budget_s=1.0),
        clock=sim,
    )
    loop.load()
    (w,) = store.submit("", "", [gpu_job(1, 1, 10)], sim.now).workloads
    loop.submitted([w])
    loop.run_cycle()
    first = store.get(w.id).placements[0].start_time
    assert first is not None and first >= MIDNIGHT
    # a new forecast makes another cheap hour cheaper still: the reservation moves there
    target = MIDNIGHT + timedelta(hours=3 if first != MIDNIGHT + timedelta(hours=3) else 1)
    forecast = parse_forecast(
        {"start": target.isoformat(), "sites": {"a": {"price_cny_per_kwh": [0.05]}}}, scenario
    )
    loop.set_forecast(forecast)
    loop.run_cycle()
    (rep,) = store.get(w.id).placements
    assert rep.start_time == target and len(rep.gpu_indices) == 1
    assert (loop.snapshot().cluster.gpu_free[0] == 1000).all()  # nothing held before it starts
    sim.now = target + timedelta(minutes=1)
    loop.run_cycle()
    assert int(loop.snapshot().cluster.gpu_free[0, rep.gpu_indices[0]]) == 0


def test_a_drained_gpu_replica_never_moves_onto_gpus_a_reservation_holds() -> None:
    scenario = gpu_scenario(2, 0)
    p = problem(scenario)
    cluster, tl = p.cluster, p.timeline
    assert tl is not None
    r = Resources(2000, 4096, gpus=1)
    running = Workload(
        "run",
        WorkloadSpec(tenant="t", resources=r, kind=WorkloadKind.SERVICE),
        WorkloadState.PLACED,
        (ReplicaPlacement(0, "a", "a/gpu-0000", 1.0, (0,)),),
        placed_at=NOW,
    )
    cluster.allocate(0, r, (0,))
    tl.hold("run", [0], 2000, 4096, hour_of(NOW), None, gpus=[(0,)], gpu_share=1000)
    midnight = hour_of(MIDNIGHT)
    tl.hold("later", [1], 2000, 4096, midnight, midnight + 2, True, gpus=[(0,)], gpu_share=1000)
    plan = plan_drain(p, PARAMS, [running], ["a/gpu-0000"])
    (rep,) = plan.placements["run"][0]
    assert (rep.node, rep.gpu_indices) == ("a/gpu-0001", (1,))


def test_a_timeline_passed_as_state_keeps_its_cordoned_nodes_without_room() -> None:
    cluster = Cluster(gpu_scenario(2, 0))
    tl = Timeline(cluster, hour_of(NOW)).without_room_on([0])
    again = Timeline.from_state(cluster, tl.state())
    cpu, _ = again.free(again.base, again.end)
    assert cpu.tolist() == [0, 16000]
    assert (again.hourly_gpu_free()[0] <= 0).all() and (again.hourly_gpu_free()[1] == 1000).all()


def test_the_time_checker_flags_a_gang_whose_replicas_start_at_different_times() -> None:
    scenario = gpu_scenario(2, 0)
    gang = gpu_job(1, 1, 20, replicas=2, topology=Topology.GANG)
    placements = {
        "g": tuple(ReplicaPlacement(i, "a", f"a/gpu-000{i}", 1.0, (0,)) for i in range(2))
    }
    together = {"g": [(0.0, 3600.0), (0.0, 3600.0)]}
    assert check_over_time(scenario, {"g": gang}, placements, together) == []
    apart = {"g": [(0.0, 3600.0), (3600.0, 7200.0)]}
    assert [v.rule for v in check_over_time(scenario, {"g": gang}, placements, apart)] == ["gang"]
