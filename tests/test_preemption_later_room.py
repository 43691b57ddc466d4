"""Preemption leaves reservations the room they need later, hour by hour, as its plan goes: a
victim that ends before a reservation starts frees no room for it, a victim spared beside the
preemptor must fit later too, one preemptor's room later is not another's, and what a victim
frees later (or a preemptor that ends before a reservation starts leaves) is used. GPU shares
and GANGs on both sides too. Every outcome is checked by ``overloaded``, computed from the
workloads' placements, starts and durations alone."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from scheduler.domain import (
    GPU_MILLIS,
    Cluster,
    Cost,
    ReplicaPlacement,
    Resources,
    Scenario,
    Topology,
    Workload,
    WorkloadKind,
    WorkloadSpec,
    WorkloadState,
)
from scheduler.loop.allocation import Allocation
from scheduler.solver import PendingWorkload, Problem, SolverParams
from scheduler.solver.preemption import Preemption, plan_preemptions
from scheduler.store import CycleCommit, Store
from tests.test_loop_preemption import Driver
from tests.test_loop_support import store_fixture  # noqa: F401
from tests.test_properties import PROPERTY_SETTINGS

NOW = datetime(2025, 7, 1, 4, 0, tzinfo=UTC)
NEAR = ("near",)
GREEN = ("green",)


def spec(
    cores: float,
    priority: int = 0,
    *,
    hours: float = 0,
    sites: tuple[str, ...] = NEAR,
    replicas: int = 1,
    topology: Topology = Topology.SPREAD,
    gpu_millis: int = 0,
    gpus: int = 0,
) -> WorkloadSpec:
    return WorkloadSpec(
        tenant="t",
        resources=Resources(int(cores * 1000), 1024, gpus=gpus, gpu_millis=gpu_millis),
        priority=priority,
        replicas=replicas,
        topology=topology,
        duration_s=int(hours * 3600),
        allowed_sites=sites,
    )


def on(
    wid: str,
    s: WorkloadSpec,
    nodes: Sequence[str],
    start: datetime,
    gpus: Sequence[tuple[int, ...]] = (),
    cost: float = 1.0,
) -> Workload:
    """``s`` PLACED on ``nodes`` (replica i on ``nodes[i]``, GPUs ``gpus[i]``) from ``start``:
    running if it is past, a reservation if it is to come."""
    reps = tuple(
        ReplicaPlacement(i, n.split("/")[0], n, 0.0, gpus[i] if gpus else (), start_time=start)
        for i, n in enumerate(nodes)
    )
    return Workload(wid, s, WorkloadState.PLACED, reps, cost=Cost(cost))


def overloaded(scenario: Scenario, workloads: Sequence[Workload], now: datetime) -> list[str]:
    """Every node (CPU, memory) and GPU over its capacity at the start of some workload, each
    holding from its placements' start (``now`` if none) for its duration (ever, without)."""
    cap = Cluster(scenario)
    spans = []  # (start, end, node, cpu, mem, GPUs, millis per GPU)
    for w in workloads:
        r = w.spec.resources
        share = GPU_MILLIS if r.gpus else r.gpu_millis
        for p in w.placements:
            start = p.start_time or now
            end = start + timedelta(seconds=w.spec.duration_s) if w.spec.duration_s else None
            spans.append((start, end, p.node, r.cpu_millis, r.memory_mib, p.gpu_indices, share))
    out = []
    for t in sorted({s[0] for s in spans}):
        cpu: dict[str, int] = {}
        mem: dict[str, int] = {}
        gpu: dict[tuple[str, int], int] = {}
        for start, end, node, c, m, gs, share in spans:
            if start <= t and (end is None or t < end):
                cpu[node] = cpu.get(node, 0) + c
                mem[node] = mem.get(node, 0) + m
                for g in gs:
                    gpu[node, g] = gpu.get((node, g), 0) + share
        for node, c in cpu.items():
            n = cap.index[node]
            if c > cap.cap_cpu[n] or mem[node] > cap.cap_mem[n]:
                out.append(f"{node} at {t:%H:%M}: {c} millicores, {mem[node]} MiB")
        out += [f"{n} GPU {g} at {t:%H:%M}: {v} millis" for (n, g), v in gpu.items() if v > 1000]
    return out


def preempt(
    scenario: Scenario, holders: Sequence[Workload], *stranded: tuple[str, WorkloadSpec]
) -> tuple[list[Preemption], list[Workload]]:
    """The plan for ``stranded`` on the cluster and timeline that hold ``holders`` (as the
    loop's allocation holds them at ``NOW``), and every workload holding capacity after it."""
    allocation = Allocation(scenario)
    allocation.advance(NOW)
    for w in holders:
        assert allocation.restore(w, NOW)
    assert overloaded(scenario, holders, NOW) == []  # a valid start
    problem = Problem(scenario, allocation.cluster, (), now=NOW, timeline=allocation.timeline)
    pending = [PendingWorkload(wid, s) for wid, s in stranded]
    plans = plan_preemptions(problem, SolverParams(), pending, holders)
    gone = {v for p in plans for v in p.victims}
    specs = dict(stranded)
    after = [w for w in holders if w.id not in gone] + [
        Workload(p.preemptor, specs[p.preemptor], WorkloadState.PLACED, p.placements) for p in plans
    ]
    return plans, after


A, B = "near/cpu-0000", "near/cpu-0001"
EARLIER = NOW - timedelta(minutes=30)
IN_2H, IN_3H = NOW + timedelta(hours=2), NOW + timedelta(hours=3)


def keep_b() -> Workload:
    """near/cpu-0001 full of work no one preempts."""
    return on("keep", spec(4, 9), [B], EARLIER)


def test_no_preemptor_takes_a_reservations_room_when_its_victim_ends_before_the_reservation_starts(
    tiny: Scenario,
) -> None:
    # near/cpu-0000: v (3 of 4 cores) ends in 30 minutes; a reservation takes 3 cores from 2
    # hours on. Displacing v makes room now, none then: 2 cores for good are not there
    v = on("v", spec(3, hours=1), [A], EARLIER)
    later = on("later", spec(3, hours=2), [A], IN_2H)
    plans, after = preempt(tiny, [v, later, keep_b()], ("p", spec(2, 2)))
    assert overloaded(tiny, after, NOW) == []
    assert plans == []


def test_a_victim_is_displaced_not_spared_when_sparing_it_takes_a_reservations_room(
    tiny: Scenario,
) -> None:
    # near/cpu-0000: v (1 core, for good) and a reservation of 2 cores from 2 hours on. p (2
    # cores) fits only without v: beside v it fits now, but not once the reservation starts
    v = on("v", spec(1), [A], EARLIER)
    later = on("later", spec(2, hours=2), [A], IN_2H)
    plans, after = preempt(tiny, [v, later, keep_b()], ("p", spec(2, 2)))
    assert overloaded(tiny, after, NOW) == []
    (p,) = plans
    assert p.victims == ("v",) and p.placements[0].node == A


def test_two_preemptors_of_one_plan_do_not_both_take_a_reservations_room(tiny: Scenario) -> None:
    # near/cpu-0000: v (2 cores, the cheaper) ends in 30 minutes, w (2 cores) runs for good; a
    # reservation takes 2 cores from 2 hours on. Room for one preemptor for good, made by w
    v = on("v", spec(2, hours=1), [A], EARLIER, cost=0.1)
    w = on("w", spec(2), [A], EARLIER, cost=5.0)
    later = on("later", spec(2, hours=2), [A], IN_2H)
    holders = [v, w, later, keep_b()]
    plans, after = preempt(tiny, holders, ("p1", spec(2, 2)), ("p2", spec(2, 1)))
    assert overloaded(tiny, after, NOW) == []
    (p,) = plans
    assert p.preemptor == "p1" and p.victims == ("w",)


def test_a_preemptor_that_ends_before_a_reservation_starts_takes_the_room_its_victim_frees(
    tiny: Scenario,
) -> None:
    # near/cpu-0000: v (2 cores, for good) and a reservation of 2 cores from 3 hours on. p (3
    # cores) runs for an hour: without v there is room for it until the reservation starts
    v = on("v", spec(2), [A], EARLIER)
    later = on("later", spec(2, hours=2), [A], IN_3H)
    plans, after = preempt(tiny, [v, later, keep_b()], ("p", spec(3, 2, hours=1)))
    assert overloaded(tiny, after, NOW) == []
    (p,) = plans
    assert p.victims == ("v",) and p.placements[0].node == A


def test_a_gang_victim_leaves_whole_when_a_gang_preemptor_needs_its_room_later(
    tiny: Scenario,
) -> None:
    # both near nodes: a replica of the GANG g (1 core, for good) and of a reservation of 2
    # cores from 2 hours on. The GANG p (2 x 2 cores) fits beside g now, not once the
    # reservation starts: g leaves, whole, and is not spared
    gang = Topology.GANG
    g = on("g", spec(1, replicas=2, topology=gang), [A, B], EARLIER)
    later = on("later", spec(2, hours=2, replicas=2), [A, B], IN_2H)
    plans, after = preempt(tiny, [g, later], ("p", spec(2, 2, replicas=2, topology=gang)))
    assert overloaded(tiny, after, NOW) == []
    (p,) = plans
    assert p.victims == ("g",) and {r.node for r in p.placements} == {A, B}


def test_a_gpu_share_preemptor_takes_the_share_its_victim_frees_beside_a_reservation(
    tiny: Scenario,
) -> None:
    # green/gpu-0000: v holds half of GPU 0 for good, a reservation the other half from 2 hours
    # on; GPU 1 is taken for good by work no one preempts. Without v, half of GPU 0 is free in
    # every hour: a preemptor of half a GPU goes there, one of 0.6 does not
    gpu = "green/gpu-0000"
    v = on("v", spec(1, sites=GREEN, gpu_millis=500), [gpu], EARLIER, [(0,)])
    keep = on("keep", spec(1, 9, sites=GREEN, gpus=1), [gpu], EARLIER, [(1,)])
    later = on("later", spec(1, hours=2, sites=GREEN, gpu_millis=500), [gpu], IN_2H, [(0,)])
    holders = [v, keep, later]
    plans, after = preempt(tiny, holders, ("p", spec(1, 2, sites=GREEN, gpu_millis=500)))
    assert overloaded(tiny, after, NOW) == []
    (p,) = plans
    assert p.victims == ("v",) and p.placements[0].gpu_indices == (0,)
    plans, after = preempt(tiny, holders, ("p", spec(1, 2, sites=GREEN, gpu_millis=600)))
    assert overloaded(tiny, after, NOW) == [] and plans == []


GPU_NODE = "green/gpu-0000"


@st.composite
def holding(draw: st.DrawFn) -> Workload:
    """A workload running since a few minutes ago or reserved to start in a few hours, on one
    node (the GPU node with a GPU share or a whole GPU), for good or for some hours."""
    node = draw(st.sampled_from([A, A, B, B, "green/cpu-0000", GPU_NODE]))  # near: full
    later = draw(st.booleans())
    hours = draw(st.integers(1, 3)) if later else draw(st.sampled_from([0, 1, 2]))
    start = NOW + timedelta(hours=draw(st.integers(1, 4))) if later else EARLIER
    gpu = draw(st.sampled_from([0, 500, 1000])) if node == GPU_NODE else 0
    s = spec(
        draw(st.integers(1, 3)),
        draw(st.integers(0, 2)),
        hours=hours,
        sites=(node.split("/")[0],),
        gpus=1 if gpu == 1000 else 0,
        gpu_millis=gpu if gpu < 1000 else 0,
    )
    wid = f"w{draw(st.integers(0, 10**9))}"
    return on(wid, s, [node], start, [(draw(st.sampled_from([0, 1])),)] if gpu else ())


def preemptor(draw: st.DrawFn, i: int) -> tuple[str, WorkloadSpec]:
    gang = draw(st.booleans())
    gpu = draw(st.sampled_from([0, 0, 500, 1000]))
    s = spec(
        draw(st.integers(1, 3)),
        draw(st.integers(1, 3)),
        hours=draw(st.sampled_from([0, 1, 2])),
        sites=GREEN if gpu else draw(st.sampled_from([NEAR, NEAR, GREEN])),
        replicas=2 if gang and not gpu else 1,
        topology=Topology.GANG if gang else Topology.SPREAD,
        gpus=1 if gpu == 1000 else 0,
        gpu_millis=gpu if gpu < 1000 else 0,
    )
    return f"p{i}", s


@PROPERTY_SETTINGS
@given(data=st.data())
def test_no_preemption_puts_a_node_over_capacity_at_any_hour_ahead(
    tiny: Scenario, data: st.DataObject
) -> None:
    """Random running work and reservations (each kept only where everything fits at every
    instant), random stranded work of higher priorities, GANGs and GPUs among them: after the
    plan, no node and no GPU holds more than it has at any instant ahead."""
    holders: list[Workload] = []
    for w in data.draw(st.lists(holding(), min_size=6, max_size=20, unique_by=lambda w: w.id)):
        if not overloaded(tiny, [*holders, w], NOW):
            holders.append(w)
    stranded = [preemptor(data.draw, i) for i in range(data.draw(st.integers(1, 3)))]
    _, after = preempt(tiny, holders, *stranded)
    assert overloaded(tiny, after, NOW) == []


def stored(store: Store, w: Workload) -> Workload:
    """``w`` submitted and committed PLACED where it is (a reservation if it starts later)."""
    (new,) = store.submit("", "", [w.spec], NOW).workloads
    placements = {new.id: (w.placements, Cost(1.0))}
    store.commit_cycle(CycleCommit({new.id: new}, placements, {}, {}, NOW))
    return store.get(new.id)


def test_a_reservation_starts_on_its_room_when_a_victim_would_have_ended_before_it(
    store: Store, tiny: Scenario
) -> None:
    # the first test through the loop: a latency-critical service waits, and the reservation
    # (of work above the service's priority: it is not displaced once started) starts on the
    # room it was promised. Displacing v for the service, as before, left the reservation
    # running unaccounted: near/cpu-0000 held 5 cores once it started
    v = stored(store, on("v", spec(3, hours=1), [A], EARLIER))
    stored(store, on("later", spec(3, 5, hours=2), [A], IN_2H))
    stored(store, keep_b())
    drive = Driver(store, tiny)
    drive.clock.now = NOW
    service = WorkloadSpec(
        tenant="t",
        resources=Resources(2000, 1024),
        kind=WorkloadKind.SERVICE,
        priority=2,
        allowed_sites=NEAR,
    )
    (hi,) = drive.submit(service)
    drive.cycle()
    drive.clock.now = IN_2H
    drive.cycle()  # v completed, the reservation started
    placed = drive.store.list_workloads("", [WorkloadState.PLACED], 0, 100).workloads
    assert overloaded(tiny, placed, drive.clock.now) == []
    held = drive.loop.snapshot().cluster
    assert held.cap_cpu[held.index[A]] - held.free_cpu[held.index[A]] == 3000  # the reservation
    assert drive.preempted() == [] and drive.state(hi) == WorkloadState.PENDING
    assert drive.store.get(v.id).state == WorkloadState.COMPLETED  # it ran to its end
