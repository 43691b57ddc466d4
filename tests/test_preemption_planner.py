"""``plan_preemptions`` on its own: which running workloads a stranded higher-priority one
displaces (fewest replicas, then cheapest; never equal priority; protected ones never; a GANG
victim whole, a GANG preemptor whole or not at all) and where it goes (its rules kept)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from scheduler.bench.checker import check_placements
from scheduler.domain import (
    Cluster,
    Cost,
    ReplicaPlacement,
    Resources,
    Scenario,
    Topology,
    Workload,
    WorkloadSpec,
    WorkloadState,
)
from scheduler.solver import PendingWorkload, Problem, SolverParams, solve
from scheduler.solver.preemption import plan_preemptions
from tests.test_properties import PROPERTY_SETTINGS, workload_specs

NEAR = ("near",)


def spec(cores: float, priority: int = 0, replicas: int = 1, **kw: object) -> WorkloadSpec:
    return WorkloadSpec(
        tenant="t",
        resources=Resources(int(cores * 1000), 1024),
        priority=priority,
        replicas=replicas,
        **kw,  # type: ignore[arg-type]
    )


def running(
    cluster: Cluster, wid: str, s: WorkloadSpec, nodes: list[str], cost: float = 1.0
) -> Workload:
    """``s`` placed on ``nodes`` (one replica each), its capacity taken on ``cluster``."""
    reps = []
    for i, n in enumerate(nodes):
        gpus = cluster.allocate(cluster.index[n], s.resources)
        reps.append(ReplicaPlacement(i, n.split("/")[0], n, 0.0, gpus))
    return Workload(wid, s, WorkloadState.PLACED, tuple(reps), cost=Cost(cost))


def plan(
    tiny: Scenario,
    cluster: Cluster,
    stranded: list[tuple[str, WorkloadSpec]],
    holders: list[Workload],
    **kw: object,
) -> list:
    problem = Problem(tiny, cluster, ())
    pending = [PendingWorkload(wid, s) for wid, s in stranded]
    return plan_preemptions(problem, SolverParams(), pending, holders, **kw)  # type: ignore[arg-type]


def near_full_of(tiny: Scenario, cluster: Cluster) -> list[Workload]:
    """near's two 4-core nodes, each holding two 2-core priority-0 jobs."""
    out = []
    for node in ("near/cpu-0000", "near/cpu-0001"):
        for k in range(2):
            out.append(running(cluster, f"{node}-{k}", spec(2, allowed_sites=NEAR), [node]))
    return out


def test_a_higher_priority_workload_displaces_one_victim_when_one_makes_room(
    tiny: Scenario,
) -> None:
    cluster = Cluster(tiny)
    holders = near_full_of(tiny, cluster)
    (p,) = plan(tiny, cluster, [("hi", spec(2, priority=2, allowed_sites=NEAR))], holders)
    assert p.preemptor == "hi" and len(p.victims) == 1
    (victim,) = [w for w in holders if w.id == p.victims[0]]
    assert p.placements[0].node == victim.placements[0].node
    assert cluster.free_cpu.sum() == Cluster(tiny).free_cpu.sum() - 8000  # not changed


def test_equal_priority_never_preempts(tiny: Scenario) -> None:
    cluster = Cluster(tiny)
    holders = near_full_of(tiny, cluster)
    assert plan(tiny, cluster, [("same", spec(2, priority=0, allowed_sites=NEAR))], holders) == []


def test_protected_workloads_are_never_displaced(tiny: Scenario) -> None:
    cluster = Cluster(tiny)
    holders = near_full_of(tiny, cluster)
    every = {w.id for w in holders}
    hi = [("hi", spec(2, priority=2, allowed_sites=NEAR))]
    assert plan(tiny, cluster, hi, holders, protected=every) == []
    (p,) = plan(tiny, cluster, hi, holders, protected=every - {"near/cpu-0001-1"})
    assert p.victims == ("near/cpu-0001-1",)


def test_the_fewest_replicas_are_displaced_then_the_cheapest(tiny: Scenario) -> None:
    cluster = Cluster(tiny)
    # near/cpu-0000: one 4-core job of 1 replica; near/cpu-0001: replicas of a 2-replica job
    # (1 core each, the other on green) plus a cheap and a dear 1-core job
    big = running(cluster, "big", spec(4, allowed_sites=NEAR), ["near/cpu-0000"], cost=9.0)
    pair = running(cluster, "pair", spec(1, replicas=2), ["near/cpu-0001", "green/cpu-0000"], 0.1)
    dear = running(cluster, "dear", spec(1, allowed_sites=NEAR), ["near/cpu-0001"], cost=5.0)
    cheap = running(cluster, "cheap", spec(1, allowed_sites=NEAR), ["near/cpu-0001"], cost=0.5)
    more = running(cluster, "more", spec(1, allowed_sites=NEAR), ["near/cpu-0001"], cost=0.7)
    holders = [big, pair, dear, cheap, more]
    (p,) = plan(tiny, cluster, [("hi", spec(1, priority=1, allowed_sites=NEAR))], holders)
    assert p.victims == ("cheap",)  # one replica, the cheapest of those


def test_a_gang_victim_is_displaced_whole_with_the_rest_of_the_room_needed(tiny: Scenario) -> None:
    cluster = Cluster(tiny)
    gang = spec(2, replicas=2, topology=Topology.GANG, allowed_sites=NEAR)
    g = running(cluster, "gang", gang, ["near/cpu-0000", "near/cpu-0001"])
    rest = [
        running(cluster, f"fill-{n}", spec(2, priority=1, allowed_sites=NEAR), [f"near/{n}"])
        for n in ("cpu-0000", "cpu-0001")
    ]
    # 4 cores at priority 2 need one whole node: its fill (fewer replicas) and the gang go
    (p,) = plan(tiny, cluster, [("hi", spec(4, priority=2, allowed_sites=NEAR))], [g, *rest])
    node = p.placements[0].node
    assert p.victims == (f"fill-{node.split('/')[1]}", "gang")


def test_a_gang_preemptor_is_placed_whole_or_not_at_all(tiny: Scenario) -> None:
    cluster = Cluster(tiny)
    holders = near_full_of(tiny, cluster)
    gang = spec(2, priority=3, replicas=3, topology=Topology.GANG, allowed_sites=NEAR)
    (p,) = plan(tiny, cluster, [("g", gang)], holders)
    assert len(p.placements) == 3 and {r.site for r in p.placements} == {"near"}
    assert len(p.victims) == 3
    too_big = spec(2, priority=3, replicas=5, topology=Topology.GANG, allowed_sites=NEAR)
    assert plan(tiny, cluster, [("g", too_big)], holders) == []


def test_cordoned_nodes_take_no_preemptor(tiny: Scenario) -> None:
    cluster = Cluster(tiny)
    holders = near_full_of(tiny, cluster)
    hi = [("hi", spec(2, priority=2, allowed_sites=NEAR))]
    (p,) = plan(tiny, cluster, hi, holders, blocked=["near/cpu-0000"])
    assert p.placements[0].node == "near/cpu-0001"
    assert plan(tiny, cluster, hi, holders, blocked=["near/cpu-0000", "near/cpu-0001"]) == []


def test_a_spread_preemptor_opens_its_sites(tiny: Scenario) -> None:
    cluster = Cluster(tiny)
    holders = near_full_of(tiny, cluster)
    for n in ("cpu-0000", "cpu-0001", "cpu-0002"):
        holders.append(running(cluster, f"g-{n}", spec(4), [f"green/{n}"]))
    holders.append(running(cluster, "g-gpu", spec(8), ["green/gpu-0000"]))
    spread = spec(2, priority=1, replicas=2, topology=Topology.SPREAD, min_sites=2)
    (p,) = plan(tiny, cluster, [("s", spread)], holders)
    assert {r.site for r in p.placements} == {"near", "green"}


def test_two_preemptors_never_share_a_victim(tiny: Scenario) -> None:
    cluster = Cluster(tiny)
    holders = near_full_of(tiny, cluster)
    ps = plan(
        tiny,
        cluster,
        [
            ("a", spec(2, priority=1, allowed_sites=NEAR)),
            ("b", spec(2, priority=2, allowed_sites=NEAR)),
        ],
        holders,
    )
    assert [p.preemptor for p in ps] == ["b", "a"]  # the higher priority first
    victims = [v for p in ps for v in p.victims]
    assert len(victims) == len(set(victims)) == 2


def test_a_victim_that_fits_back_beside_the_preemptor_is_spared(tiny: Scenario) -> None:
    cluster = Cluster(tiny)
    # near/cpu-0000: a cheap 1-core job taken first, then a 3-core one; near/cpu-0001: a
    # 2-replica job (the other replica on green) that would cost as many replicas, but dearer
    small = running(cluster, "small", spec(1, allowed_sites=NEAR), ["near/cpu-0000"], 0.1)
    big = running(cluster, "big", spec(3, allowed_sites=NEAR), ["near/cpu-0000"], 5.0)
    pair = running(cluster, "pair", spec(4, replicas=2), ["near/cpu-0001", "green/cpu-0000"], 9)
    (p,) = plan(
        tiny, cluster, [("hi", spec(3, priority=1, allowed_sites=NEAR))], [small, big, pair]
    )
    assert p.placements[0].node == "near/cpu-0000"
    assert p.victims == ("big",)  # "small" fits back beside the 3 cores


def filler_jobs() -> st.SearchStrategy[WorkloadSpec]:
    return st.builds(
        lambda cpu, mem, priority: WorkloadSpec(
            tenant="t", resources=Resources(cpu, mem), priority=priority
        ),
        st.integers(500, 4000),
        st.integers(64, 8000),
        st.integers(0, 2),
    )


@PROPERTY_SETTINGS
@given(data=st.data())
def test_preemptions_keep_every_rule_and_displace_only_lower_unprotected_work(
    tiny: Scenario, data: st.DataObject
) -> None:
    """Random running work (placed by first-fit) and random stranded work: every preemptor's
    placement holds every hard rule on the cluster without its victims (the independent
    checker), every victim is of lower priority, not protected, displaced once."""
    cluster = Cluster(tiny)
    params = SolverParams(policy="first-fit")
    # a mix of every kind of work, then plain CPU jobs that fill the nodes up
    specs = data.draw(st.lists(workload_specs(), max_size=6)) + data.draw(
        st.lists(filler_jobs(), min_size=4, max_size=16)
    )
    first = solve(
        Problem(tiny, cluster, tuple(PendingWorkload(f"r{i}", s) for i, s in enumerate(specs))),
        params,
    )
    holders = [
        Workload(wid, specs[int(wid[1:])], WorkloadState.PLACED, tuple(reps), cost=Cost(0.1))
        for wid, reps in first.placements.items()
    ]
    for w in holders:
        for rp in w.placements:
            cluster.allocate(cluster.index[rp.node], w.spec.resources, rp.gpu_indices or None)
    protected = {w.id for w in holders if data.draw(st.booleans())}
    stranded = data.draw(st.lists(workload_specs(), min_size=1, max_size=3))
    pending = {f"p{i}": replace(s, priority=s.priority + 1) for i, s in enumerate(stranded)}
    problem = Problem(tiny, cluster, ())
    out = plan_preemptions(
        problem,
        SolverParams(),
        [PendingWorkload(k, s) for k, s in pending.items()],
        holders,
        protected,
    )
    by_id = {w.id: w for w in holders}
    victims = [v for p in out for v in p.victims]
    assert len(victims) == len(set(victims)) and not set(victims) & protected
    assert all(by_id[v].spec.priority < p.priority for p in out for v in p.victims)
    freed = cluster.copy()
    for v in victims:
        for rp in by_id[v].placements:
            freed.release(freed.index[rp.node], by_id[v].spec.resources, rp.gpu_indices)
    placed = {p.preemptor: p.placements for p in out}
    assert check_placements(tiny, pending, placed, baseline=freed, cpu_on_gpu_nodes=False) == []


def test_a_gpu_preemptor_keeps_off_gpus_reserved_for_later(tiny: Scenario) -> None:
    from datetime import UTC, datetime

    from scheduler.domain.forecast import hour_of
    from scheduler.domain.timeline import Timeline

    now = datetime(2025, 7, 1, 4, 0, tzinfo=UTC)
    one_gpu = replace(spec(1), resources=Resources(1000, 1024, gpus=1))
    two_gpus = replace(spec(1, priority=2), resources=Resources(1000, 1024, gpus=2))

    def preempted(reserve: bool) -> list:
        cluster = Cluster(tiny)
        victim = running(cluster, "v", one_gpu, ["green/gpu-0000"])
        timeline = Timeline(cluster, hour_of(now))
        if reserve:  # the GPU the victim leaves free is reserved two hours ahead
            node = cluster.index["green/gpu-0000"]
            h = hour_of(now) + 2
            timeline.hold("later", [node], 1000, 1024, h, h + 1, True, gpus=[[1]], gpu_share=1000)
        problem = Problem(tiny, cluster, (), now=now, timeline=timeline)
        stranded = [PendingWorkload("p", two_gpus)]
        return plan_preemptions(problem, SolverParams(), stranded, [victim])

    (free,) = preempted(reserve=False)
    assert free.victims == ("v",)
    assert preempted(reserve=True) == []
