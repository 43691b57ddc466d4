"""The packing repairs through their public interface: a ``PackingState`` built from named
nodes, one repair applied, the placement read back. Tiny scenario of tests/conftest.py."""

from __future__ import annotations

import time

import pytest

from scheduler.domain import (
    Cluster,
    Resources,
    Scenario,
    Topology,
    WorkloadKind,
    WorkloadSpec,
    parse_scenario,
)
from scheduler.solver import REPAIRS, PendingWorkload, Problem, SolverParams
from scheduler.solver.budget import TimeBudget
from scheduler.solver.filters import eligibility_of
from scheduler.solver.fragmentation import FragmentationScorer, RequestType
from scheduler.solver.valley.repairs import REGISTRY, run_repairs
from scheduler.solver.valley.repairs.fgd_refit import refit
from scheduler.solver.valley.state import PackingState
from tests.conftest import TINY


def state_of(
    scenario, specs: dict[str, WorkloadSpec], cluster=None, params=None, **problem_kw
) -> PackingState:
    cluster = cluster or Cluster(scenario)
    params = params or SolverParams()
    p = Problem(
        scenario, cluster, tuple(PendingWorkload(w, s) for w, s in specs.items()), **problem_kw
    )
    elig = eligibility_of(scenario, cluster, specs.items(), params)
    return PackingState(p, params, elig)


def apply(name: str, state: PackingState, budget: TimeBudget | None = None) -> bool:
    repair = REGISTRY[name]()
    assert repair.supports(state)
    with state.transaction():
        return repair.apply(state, budget or TimeBudget.unlimited())


def nodes_of(state: PackingState, wid: str) -> list[str]:
    return [p.node for p in state.placements()[wid]]


def holds_exactly_what_it_says(state: PackingState) -> bool:
    """Releasing every recorded replica empties the cluster (before: empty)."""
    cluster = state.cluster.copy()
    for wid in state.placed():
        for node, gpus in state.slots(wid):
            cluster.release(node, state.specs[wid].resources, gpus)
    return bool((cluster.replicas_on == 0).all() and (cluster.free_cpu == cluster.cap_cpu).all())


def holds_exactly_what_it_says_over(state: PackingState, before: Cluster) -> bool:
    """Releasing every recorded replica gives back the cluster as it was before the cycle."""
    cluster = state.cluster.copy()
    for wid in state.placed():
        for node, gpus in state.slots(wid):
            cluster.release(node, state.specs[wid].resources, gpus)
    return bool((cluster.gpu_free == before.gpu_free).all())


def gpu(millis: int = 0, gpus: int = 0) -> WorkloadSpec:
    return WorkloadSpec(tenant="t", resources=Resources(1000, 1024, gpus=gpus, gpu_millis=millis))


def job(cores: float, gib: float, **kw) -> WorkloadSpec:
    r = Resources(int(cores * 1000), int(gib * 1024))
    return WorkloadSpec(tenant="t", resources=r, **kw)


def test_every_repair_named_in_the_params_is_registered_once():
    assert tuple(REGISTRY) == REPAIRS
    assert SolverParams().repairs == REPAIRS


def test_consolidate_empties_a_node_woken_this_cycle_onto_another(tiny):
    state = state_of(
        tiny, {"a": job(1, 1, allowed_sites=("near",)), "b": job(1, 1, allowed_sites=("near",))}
    )
    state.place_on("a", ["near/cpu-0000"])
    state.place_on("b", ["near/cpu-0001"])
    assert apply("consolidate", state)
    assert len({nodes_of(state, "a")[0], nodes_of(state, "b")[0]}) == 1
    assert holds_exactly_what_it_says(state)


def test_consolidate_leaves_nodes_that_cannot_be_emptied(tiny):
    big = job(3, 6, allowed_sites=("near",))
    state = state_of(tiny, {"a": big, "b": big})
    state.place_on("a", ["near/cpu-0000"])
    state.place_on("b", ["near/cpu-0001"])
    assert not apply("consolidate", state)
    assert nodes_of(state, "a") == ["near/cpu-0000"] and nodes_of(state, "b") == ["near/cpu-0001"]


def test_gpu_nodes_woken_by_a_wasteful_packing_are_packed_onto_fewer(tiny):
    scenario = tiny.scaled({"green/gpu": 3})
    specs = {"a": gpu(600), "b": gpu(600), "c": gpu(400), "d": gpu(400)}
    state = state_of(scenario, specs)
    # the 0.6 shares alone on one node, the 0.4 shares alone on another: two nodes powered
    for wid, node, g in (("a", 0, 0), ("b", 0, 1), ("c", 1, 0), ("d", 1, 1)):
        state.place_on(wid, [f"green/gpu-{node:04d}"], [(g,)])
    assert apply("gpu-repack", state)
    assert len({nodes_of(state, w)[0] for w in specs}) == 1
    assert holds_exactly_what_it_says(state)


def test_gpu_repack_never_groups_shares_whose_cores_exceed_a_node(tiny):
    # regression: shares from different nodes were grouped into one GPU by their millis only,
    # an item of 12 cores for 8-core nodes, and min_bins raised "exceeds the bin capacity"
    scenario = tiny.scaled({"green/gpu": 3})
    heavy = WorkloadSpec(tenant="t", resources=Resources(5000, 1024, gpu_millis=300))
    specs = {"a": heavy, "b": heavy, "c": heavy}
    state = state_of(scenario, specs)
    for wid, node in (("a", 0), ("b", 1), ("c", 2)):
        state.place_on(wid, [f"green/gpu-{node:04d}"], [(0,)])
    apply("gpu-repack", state)  # no node can take two of them: nothing to gain, no error
    assert len({nodes_of(state, w)[0] for w in specs}) == 3
    assert holds_exactly_what_it_says(state)


def test_gpu_repack_leaves_nodes_with_gpus_reserved_for_later_out(tiny):
    # regression: a node asleep now but with a GPU reserved for later (time shifting: its
    # GPU is not free in the cycle's cluster) was repacked from GPU 0 on, and the repair raised
    scenario = tiny.scaled({"green/gpu": 3})
    cluster = Cluster(scenario)
    cluster.gpu_free[cluster.index["green/gpu-0000"], 0] = 0  # GPU 0 reserved later
    specs = {"a": gpu(gpus=1), "b": gpu(gpus=1), "c": gpu(gpus=1)}
    state = state_of(scenario, specs, cluster.copy())
    for wid, node, g in (("a", 0, 1), ("b", 1, 0), ("c", 2, 0)):
        state.place_on(wid, [f"green/gpu-{node:04d}"], [(g,)])
    with state.transaction():  # as run_repairs does: an error here is a failed repair
        assert apply_unwrapped("gpu-repack", state)
    assert nodes_of(state, "b") == nodes_of(state, "c") != nodes_of(state, "a")
    assert holds_exactly_what_it_says_over(state, cluster)


def test_gpu_repack_leaves_nodes_with_cores_reserved_for_later_out(tiny):
    # the repack fills a node to its whole capacity: one whose cores are reserved for later
    # (its GPUs free) cannot take what a whole node would, and the repair raised
    scenario = tiny.scaled({"green/gpu": 4})
    cluster = Cluster(scenario)
    cluster.free_cpu[cluster.index["green/gpu-0000"]] = 1000  # the rest reserved later
    specs = {w: gpu(gpus=1) for w in "abcd"}
    state = state_of(scenario, specs, cluster.copy())
    for k, wid in enumerate(specs):
        state.place_on(wid, [f"green/gpu-{k:04d}"], [(0,)])
    with state.transaction():  # as run_repairs does: an error here is a failed repair
        assert apply_unwrapped("gpu-repack", state)
    assert nodes_of(state, "a") == ["green/gpu-0000"]
    assert len({nodes_of(state, w)[0] for w in "bcd"} - {"green/gpu-0000"}) == 2
    assert holds_exactly_what_it_says_over(state, cluster)


def apply_unwrapped(name: str, state: PackingState) -> bool:
    return REGISTRY[name]().apply(state, TimeBudget.unlimited())


def two_gpu_pools() -> Scenario:
    """Tiny with a second GPU pool in green, "gpu-h800", like "gpu" but for its GPU model: the
    repack packs both together ("gpu" first)."""
    h800 = TINY.split('gpu_model = "A800"')[0].rsplit("[[sites.green.pools]]", 1)[1]
    h800 = h800.replace('name = "gpu"', 'name = "gpu-h800"')
    text = TINY + "[[sites.green.pools]]" + h800 + 'gpu_model = "H800"\nidle_watts = 300.0\n'
    text += "max_watts = 600.0\ngpu_watts = 700.0\n"
    return parse_scenario(text, "two-gpu-pools.toml")


def test_gpu_repack_spills_onto_no_asleep_node_with_gpus_reserved_for_later(tiny):
    # regression: bins beyond a pool's woken nodes went to its nodes asleep before the cycle,
    # one with GPU 0 reserved for later among them (time shifting takes it out of the cycle's
    # cluster); the repack laid GPUs there from the first on, and the repair raised
    scenario = two_gpu_pools().scaled({"green/gpu": 2, "green/gpu-h800": 2})
    cluster = Cluster(scenario)
    cluster.gpu_free[cluster.index["green/gpu-0001"], 0] = 0  # asleep, GPU 0 reserved later
    specs = {"a": gpu(gpus=1), "b": gpu(gpus=1), "c": gpu(gpus=1)}
    state = state_of(scenario, specs, cluster.copy())
    # three nodes woken, one GPU each: two nodes would do
    for wid, node in (("a", "gpu-0000"), ("b", "gpu-h800-0000"), ("c", "gpu-h800-0001")):
        state.place_on(wid, [f"green/{node}"], [(0,)])
    with state.transaction():  # as run_repairs does: an error here is a failed repair
        assert apply_unwrapped("gpu-repack", state)
    assert len({nodes_of(state, w)[0] for w in specs}) == 2
    assert "green/gpu-0001" not in {nodes_of(state, w)[0] for w in specs}
    assert holds_exactly_what_it_says_over(state, cluster)


def test_gpu_pools_differing_only_in_model_are_packed_together(tiny):
    scenario = two_gpu_pools()
    only_h800 = WorkloadSpec(
        tenant="t", resources=Resources(1000, 1024, gpus=1), gpu_models=("H800",)
    )
    state = state_of(scenario, {"h": only_h800, "f": gpu(gpus=1)})
    state.place_on("h", ["green/gpu-h800-0000"])
    state.place_on("f", ["green/gpu-0000"])
    assert apply("gpu-repack", state)
    # one node holds both: the H800 node (the H800-only replica cannot leave it)
    assert nodes_of(state, "h") == nodes_of(state, "f") == ["green/gpu-h800-0000"]
    gpus = state.placements()["h"][0].gpu_indices + state.placements()["f"][0].gpu_indices
    assert set(gpus) == {0, 1}


def test_leftovers_go_to_the_cheapest_site_on_powered_nodes_first(tiny):
    state = state_of(tiny, {"on": job(1, 1), "new": job(1, 1)})
    state.place_on("on", ["green/cpu-0002"])
    assert apply("leftovers", state)
    assert nodes_of(state, "new") == ["green/cpu-0002"]


def test_work_stranded_over_nodes_gets_room_by_swapping_two_replicas(tiny):
    # near-0: 1 core and 0.5 GiB free; near-1: no core but 4 GiB free. The new 1-core, 1 GiB
    # job fits neither, and no replica can simply move; swapping x (1 core, 4 GiB) on near-0
    # with y (1 core, 1 GiB) on near-1 makes room on near-0.
    near = {"allowed_sites": ("near",)}
    specs = {
        "x": job(1, 4, **near),
        "z": job(2, 3.5, **near),
        "y1": job(3, 3, **near),
        "y": job(1, 1, **near),
        "new": job(1, 1, **near),
    }
    state = state_of(tiny, specs)
    for wid, node in (("x", 0), ("z", 0), ("y1", 1), ("y", 1)):
        state.place_on(wid, [f"near/cpu-{node:04d}"])
    assert apply("make-room", state)
    assert "new" in state
    assert {nodes_of(state, w)[0] for w in ("x", "new")} == {"near/cpu-0001", "near/cpu-0000"}
    assert holds_exactly_what_it_says(state)


def test_fgd_refit_moves_a_share_to_the_gpu_that_fragments_least(tiny):
    cluster = Cluster(tiny)
    node = cluster.index["green/gpu-0000"]
    cluster.allocate(node, Resources(1000, 1024, gpu_millis=300), (0,))  # GPU 0: 700 free
    target = (RequestType(Resources(1000, 1024, gpu_millis=500), 1.0),)
    state = state_of(tiny, {"w": gpu(400)}, cluster, gpu_target=target)
    state.place_on("w", ["green/gpu-0000"], [(0,)])  # best fit: 300 left, too small for 500
    assert apply("fgd-refit", state)
    assert state.placements()["w"][0].gpu_indices == (1,)
    assert state.cluster.gpu_free[node][:2].tolist() == [700, 600]


def test_fgd_refit_out_of_time_leaves_the_placement_as_it_was(tiny):
    cluster = Cluster(tiny)
    node = cluster.index["green/gpu-0000"]
    cluster.allocate(node, Resources(1000, 1024, gpu_millis=300), (0,))
    target = (RequestType(Resources(1000, 1024, gpu_millis=500), 1.0),)
    state = state_of(tiny, {"w": gpu(400)}, cluster, gpu_target=target)
    state.place_on("w", ["green/gpu-0000"], [(0,)])
    spent = TimeBudget(time.monotonic() - 2, time.monotonic() - 1)
    assert not apply("fgd-refit", state, spent)
    assert state.placements()["w"][0].gpu_indices == (0,)
    assert state.cluster.gpu_free[node][:2].tolist() == [300, 1000]


def test_fgd_refit_stopped_part_way_keeps_what_it_placed_and_puts_the_rest_back(tiny):
    # GPU 0 holds 300 millis of earlier work. This cycle: a (300) on GPU 0, b (200) on GPU 1.
    # Placed again for 500-millis requests: a goes to GPU 1 ([700, 700]: a 500 still fits on
    # both), then b would go to GPU 0 ([500, 700]). Stopped after a, b goes back to GPU 1.
    cluster = Cluster(tiny)
    node = cluster.index["green/gpu-0000"]
    cluster.allocate(node, Resources(1000, 1024, gpu_millis=300), (0,))
    target = (RequestType(Resources(1000, 1024, gpu_millis=500), 1.0),)
    scorer = FragmentationScorer(target, mode="fill+fgd")

    def placed(stop_after: int) -> list[tuple[int, ...]]:
        state = state_of(tiny, {"a": gpu(300), "b": gpu(200)}, cluster.copy(), gpu_target=target)
        state.place_on("a", ["green/gpu-0000"], [(0,)])
        state.place_on("b", ["green/gpu-0000"], [(1,)])
        asked = iter(range(10))
        with state.transaction():
            assert refit(state, scorer, lambda: next(asked) >= stop_after) == (stop_after > 0)
        assert holds_exactly_what_it_says_over(state, cluster)
        return [state.placements()[w][0].gpu_indices for w in ("a", "b")]

    assert placed(stop_after=2) == [(1,), (0,)]
    assert placed(stop_after=1) == [(1,), (1,)]
    assert placed(stop_after=0) == [(0,), (1,)]


def test_a_rolled_back_transaction_leaves_cluster_and_records_as_they_were(tiny):
    state = state_of(tiny, {"a": job(1, 1), "b": job(2, 2)})
    state.place_on("a", ["near/cpu-0000"])
    before = (state.cluster.free_cpu.copy(), state.placements())
    with state.transaction() as tx:
        state.move("a", 0, state.cluster.index["green/cpu-0001"])
        state.place_on("b", ["green/cpu-0001"])
        state.remove("a")
        tx.rollback()
    assert (state.cluster.free_cpu == before[0]).all()
    assert state.placements() == before[1]
    assert state.on_node(state.cluster.index["near/cpu-0000"]) == [("a", 0)]


def test_a_repair_that_raises_is_rolled_back_and_reported(tiny, monkeypatch):
    state = state_of(tiny, {"a": job(1, 1), "b": job(1, 1)})
    state.place_on("a", ["near/cpu-0000"])
    state.place_on("b", ["near/cpu-0001"])
    free = state.cluster.free_cpu.copy()
    consolidate = REGISTRY["consolidate"]

    def broken(self, state, budget):
        state.move("a", 0, state.cluster.index["near/cpu-0001"])
        raise RuntimeError("a bug in a repair")

    monkeypatch.setattr(consolidate, "apply", broken)
    applied, failed = run_repairs(state, ("consolidate",), TimeBudget.unlimited())
    assert (applied, failed) == ([], ["consolidate"])
    assert (state.cluster.free_cpu == free).all()
    assert nodes_of(state, "a") == ["near/cpu-0000"]


@pytest.mark.parametrize("name", REPAIRS)
def test_a_solve_without_one_repair_still_places_everything_it_can(tiny, name):
    from scheduler.solver import solve

    specs = {f"w{i}": job(1, 1) for i in range(6)}
    p = Problem(tiny, Cluster(tiny), tuple(PendingWorkload(w, s) for w, s in specs.items()))
    without = tuple(r for r in REPAIRS if r != name)
    r = solve(p, SolverParams(repairs=without))
    assert len(r.placements) == 6
    assert name not in r.stats.repairs_applied and not r.stats.repairs_failed


def test_fgd_refit_moves_cpu_work_off_a_gpu_node_where_it_strands_gpus(tiny):
    # a 4-core CPU job on the 8-core GPU node leaves 4 cores there: too few for the 6-core GPU
    # requests expected, so both GPUs would be stranded; a CPU node strands nothing
    target = (RequestType(Resources(6000, 1024, gpus=1), 1.0),)
    cpu_job = WorkloadSpec(tenant="t", resources=Resources(4000, 1024), allowed_sites=("green",))
    p = Problem(tiny, Cluster(tiny), (PendingWorkload("c", cpu_job),), gpu_target=target)
    params = SolverParams(cpu_on_gpu_nodes=True)
    elig = eligibility_of(tiny, p.cluster, [("c", cpu_job)], params)
    state = PackingState(p, params, elig)
    state.place_on("c", ["green/gpu-0000"])
    assert apply("fgd-refit", state)
    assert nodes_of(state, "c")[0].startswith("green/cpu-")
    assert holds_exactly_what_it_says(state)


def test_displace_moves_work_that_may_go_elsewhere_out_of_a_pinned_workloads_way(tiny):
    # near is full of a flexible job's replicas (3 of its 4 cores on each node); the job pinned
    # to near finds no node, and no move inside near helps (make-room's ground). Displace moves
    # one flexible replica to green, which it may use, and places the pinned job.
    specs = {"flex": job(3, 2, replicas=2), "pinned": job(3, 2, allowed_sites=("near",))}
    state = state_of(tiny, specs)
    state.place_on("flex", ["near/cpu-0000", "near/cpu-0001"])
    assert not apply("make-room", state)
    assert apply("displace", state)
    assert nodes_of(state, "pinned")[0].startswith("near/")
    assert sorted(n.split("/")[0] for n in nodes_of(state, "flex")) == ["green", "near"]
    assert holds_exactly_what_it_says(state)


def test_displace_keeps_a_spread_workloads_sites(tiny):
    # the spread service has one replica in each site: its near replica may not leave near,
    # so nothing makes room for the pinned job and the placement stays as it was
    spread = job(3, 2, replicas=2, topology=Topology.SPREAD, min_sites=2)
    specs = {
        "s": spread,
        "other": job(3, 2, allowed_sites=("near",)),
        "pinned": job(3, 2, allowed_sites=("near",)),
    }
    state = state_of(tiny, specs)
    state.place_on("s", ["near/cpu-0000", "green/cpu-0000"])
    state.place_on("other", ["near/cpu-0001"])
    assert not apply("displace", state)
    assert "pinned" not in state
    assert sorted(nodes_of(state, "s")) == ["green/cpu-0000", "near/cpu-0000"]


def test_displace_moves_a_spread_replica_its_site_can_spare(tiny):
    spread = job(3, 2, replicas=3, topology=Topology.SPREAD, min_sites=2)
    specs = {"s": spread, "pinned": job(3, 2, allowed_sites=("near",))}
    state = state_of(tiny, specs)
    state.place_on("s", ["near/cpu-0000", "near/cpu-0001", "green/cpu-0000"])
    assert apply("displace", state)
    assert nodes_of(state, "pinned")[0].startswith("near/")
    assert sorted(n.split("/")[0] for n in nodes_of(state, "s")) == ["green", "green", "near"]
    assert holds_exactly_what_it_says(state)


def _full_near(gang_priority: int, others_priority: int) -> PackingState:
    # near's two 4-core nodes each hold a 2-core job pinned to near: the 2 x 3-core GANG pinned
    # to near fits only if both jobs make way, and no node of near has room for them
    near = ("near",)
    specs = {
        "gang": job(
            3, 2, replicas=2, topology=Topology.GANG, allowed_sites=near, priority=gang_priority
        ),
        "a": job(2, 1, allowed_sites=near, priority=others_priority),
        "b": job(2, 1, allowed_sites=near, priority=others_priority),
    }
    state = state_of(parse_scenario(TINY), specs)
    state.place_on("a", ["near/cpu-0000"])
    state.place_on("b", ["near/cpu-0001"])
    return state


def test_displace_takes_out_cheaper_work_when_moving_cannot_make_room():
    # the gang's two replicas at priority 1 are worth 2 x 4 = 8 replicas of priority 0
    state = _full_near(gang_priority=1, others_priority=0)
    assert apply("displace", state)
    assert sorted(nodes_of(state, "gang")) == ["near/cpu-0000", "near/cpu-0001"]
    assert "a" not in state and "b" not in state
    assert holds_exactly_what_it_says(state)


def test_displace_never_takes_out_work_worth_as_much_as_what_it_would_place():
    state = _full_near(gang_priority=0, others_priority=1)
    assert not apply("displace", state)
    assert "gang" not in state
    assert nodes_of(state, "a") == ["near/cpu-0000"] and nodes_of(state, "b") == ["near/cpu-0001"]


def test_consolidate_keeps_a_services_replicas_on_separate_nodes(tiny):
    # a SERVICE of 2 holds at most 1 a node (the default): the two woken nodes stay powered
    svc = job(1, 1, replicas=2, kind=WorkloadKind.SERVICE, allowed_sites=("near",))
    state = state_of(tiny, {"s": svc})
    state.place_on("s", ["near/cpu-0000", "near/cpu-0001"])
    assert not apply("consolidate", state)
    assert sorted(nodes_of(state, "s")) == ["near/cpu-0000", "near/cpu-0001"]


def test_gpu_repack_packs_onto_fewer_nodes_keeping_a_services_replicas_apart(tiny):
    # three woken GPU nodes; one would hold everything, but the inference service's two
    # shares must be on two nodes: two nodes, the service on both
    scenario = tiny.scaled({"green/gpu": 3})
    svc = WorkloadSpec(
        tenant="t", resources=Resources(1000, 1024, gpu_millis=300), replicas=2,
        kind=WorkloadKind.SERVICE,
    )  # fmt: skip
    state = state_of(scenario, {"s": svc, "c": gpu(400), "d": gpu(400)})
    state.place_on("s", ["green/gpu-0000", "green/gpu-0001"], [(0,), (0,)])
    state.place_on("c", ["green/gpu-0001"], [(1,)])
    state.place_on("d", ["green/gpu-0002"], [(0,)])
    assert apply("gpu-repack", state)
    assert len(set(nodes_of(state, "s"))) == 2
    assert len({n for w in ("s", "c", "d") for n in nodes_of(state, w)}) == 2
    assert holds_exactly_what_it_says(state)


def two_gpu_nodes():
    """The tiny scenario with two GPU nodes in green."""
    return parse_scenario(TINY.replace('name = "gpu"\ncount = 1', 'name = "gpu"\ncount = 2'), "t")


@pytest.mark.parametrize("wakes", [False, True])
def test_fgd_refit_keeps_gpu_work_on_a_powered_node_where_waking_one_fragments_less(wakes):
    # both GPUs of the powered node hold 300 millis of earlier work: a new 400 there leaves
    # 300 free on that GPU, too small for the 500-millis requests expected, where the empty
    # node would keep 600 usable. Waking it (its idle power for the replica's whole run)
    # costs more than the fragment: the replica stays on the powered node - unless the
    # refit may wake nodes (``fgd_wakes_nodes``: fragmentation alone, as FGD)
    scenario = two_gpu_nodes()
    cluster = Cluster(scenario)
    node = cluster.index["green/gpu-0000"]
    for g in (0, 1):
        cluster.allocate(node, Resources(1000, 1024, gpu_millis=300), (g,))
    target = (RequestType(Resources(1000, 1024, gpu_millis=500), 1.0),)
    params = SolverParams(fgd_wakes_nodes=wakes)
    state = state_of(scenario, {"w": gpu(400)}, cluster, params, gpu_target=target)
    state.place_on("w", ["green/gpu-0000"], [(0,)])
    apply("fgd-refit", state)
    assert nodes_of(state, "w") == ["green/gpu-0001" if wakes else "green/gpu-0000"]


def test_fgd_refit_moves_gpu_work_to_the_gpu_that_fragments_least_among_powered_nodes():
    # GPU 0 of the first node holds 300 millis, GPU 0 of the second 900: the new 400 goes to
    # the first node's GPU 1, where a 500 still fits on every GPU that had room for one
    scenario = two_gpu_nodes()
    cluster = Cluster(scenario)
    cluster.allocate(cluster.index["green/gpu-0000"], Resources(1000, 1024, gpu_millis=300), (0,))
    cluster.allocate(cluster.index["green/gpu-0001"], Resources(1000, 1024, gpu_millis=900), (0,))
    target = (RequestType(Resources(1000, 1024, gpu_millis=500), 1.0),)
    state = state_of(scenario, {"w": gpu(400)}, cluster, gpu_target=target)
    state.place_on("w", ["green/gpu-0000"], [(0,)])
    assert apply("fgd-refit", state)
    assert nodes_of(state, "w") == ["green/gpu-0000"]
    assert state.placements()["w"][0].gpu_indices == (1,)
