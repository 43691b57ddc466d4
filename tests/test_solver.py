"""The optimizer on hand-checkable problems of the tiny scenario (tests/conftest.py):
near = 2 CPU nodes (4 cores, 8 GiB), dear (1.0 CNY/kWh, PUE 1.5), 1 ms from the city;
green = 3 CPU nodes and one 2-GPU node, cheap (0.5 CNY/kWh, PUE 1.1), 4 ms from the city."""

from __future__ import annotations

import time

import pytest

from scheduler.domain import (
    Cluster,
    Resources,
    Topology,
    WorkloadKind,
    WorkloadSpec,
    parse_scenario,
)
from scheduler.solver import PendingWorkload, Problem, SolverParams, SolveStatus, solve
from scheduler.solver.filters import eligibility_of
from scheduler.solver.greedy import NodeIndex
from scheduler.solver.objective import evaluate
from scheduler.solver.valley.linear import LinearModel, Relaxation
from scheduler.solver.valley.model import build_model
from scheduler.solver.valley.packing import pack
from scheduler.solver.valley.state import PackingState


def service(cores: float, slo: float, replicas: int = 1, **kw) -> WorkloadSpec:
    return WorkloadSpec(
        tenant="t",
        resources=Resources(int(cores * 1000), 1024),
        replicas=replicas,
        origin="city",
        max_latency_ms=slo,
        **{"kind": WorkloadKind.SERVICE, **kw},
    )


def problem(scenario, *specs: WorkloadSpec, cluster: Cluster | None = None) -> Problem:
    workloads = tuple(PendingWorkload(f"w{i}", s) for i, s in enumerate(specs))
    return Problem(scenario, cluster or Cluster(scenario), workloads)


def sites_of(result, wid: str) -> set[str]:
    return {p.site for p in result.placements[wid]}


def test_service_whose_slo_both_sites_meet_goes_to_the_cheaper_site(tiny):
    r = solve(problem(tiny, service(1, slo=5)))
    assert sites_of(r, "w0") == {"green"}


def test_service_with_a_tight_slo_goes_to_the_only_site_that_meets_it(tiny):
    r = solve(problem(tiny, service(1, slo=2)))
    assert sites_of(r, "w0") == {"near"}
    assert r.placements["w0"][0].latency_ms == 1.0


def test_flexible_work_arriving_first_leaves_the_scarce_site_to_critical_work(tiny):
    # near holds 8 cores. Flexible 5 ms work (arriving first) could take it; the critical 2 ms
    # work (8 cores) fits only there. The optimizer places both; kube does not.
    p = problem(tiny, service(2, slo=5, replicas=4), service(4, slo=2, replicas=2))
    valley = solve(p)
    assert set(valley.placements) == {"w0", "w1"}
    assert sites_of(valley, "w1") == {"near"}
    assert sites_of(valley, "w0") == {"green"}
    kube = solve(p, SolverParams(policy="kube"))
    assert "w1" not in kube.placements


def test_small_batch_replicas_are_consolidated_onto_one_powered_node(tiny):
    r = solve(problem(tiny, service(1, slo=5, replicas=3, kind=WorkloadKind.BATCH)))
    assert len({p.node for p in r.placements["w0"]}) == 1


def test_small_service_replicas_are_consolidated_onto_as_few_nodes_as_the_default_spread_allows(
    tiny,
):
    # a SERVICE of 3 may hold at most ceil(3 / 2) = 2 replicas on one node: two nodes, not three
    r = solve(problem(tiny, service(1, slo=5, replicas=3)))
    assert len({p.node for p in r.placements["w0"]}) == 2


def test_higher_priority_wins_the_capacity(tiny):
    # only 8 cores in near; both want 8 there
    low = service(4, slo=2, replicas=2, priority=0)
    high = service(4, slo=2, replicas=2, priority=5)
    r = solve(problem(tiny, low, high))
    assert set(r.placements) == {"w1"}
    reasons = {x.code for x in r.unplaced["w0"].reasons}
    assert "priority" in reasons or "capacity" in reasons
    assert not r.unplaced["w0"].final


def test_capacity_reason_names_the_resource_and_largest_free_amount(tiny):
    cluster = Cluster(tiny)
    for name in ("near/cpu-0000", "near/cpu-0001"):
        cluster.allocate(cluster.index[name], Resources(3000, 1024))
    r = solve(problem(tiny, service(2, slo=2), cluster=cluster))
    (reason,) = [x for x in r.unplaced["w0"].reasons if x.site == "near"]
    assert reason.code == "capacity"
    assert reason.resource == "cpu_millis"
    assert reason.requested == 2000 and reason.largest_free == 1000
    assert "at most 1000 free" in reason.message


@pytest.mark.parametrize(
    ("spec", "code"),
    [
        (service(1, slo=0.5), "slo"),
        (service(1, slo=5, allowed_sites=("elsewhere",)), "residency"),
        (
            WorkloadSpec(tenant="t", resources=Resources(1000, 1024, gpus=1), gpu_models=("H100",)),
            "gpu_model",
        ),
        (service(16, slo=5), "size"),
        (service(1, slo=5, replicas=2, topology=Topology.SPREAD, min_sites=3), "final"),
    ],
)
def test_workloads_that_can_never_fit_are_final_with_reasons(tiny, spec, code):
    r = solve(problem(tiny, spec))
    u = r.unplaced["w0"]
    assert u.final
    assert u.summary
    if code != "final":
        assert code in {x.code for x in u.reasons}


def test_gang_goes_whole_to_one_site(tiny):
    # 5 replicas of 3 cores: green holds 3 (one per CPU node), near 2: together they fit,
    # but a gang must be in one site, so it is left pending
    r = solve(problem(tiny, service(3, slo=5, replicas=5, topology=Topology.GANG)))
    assert "w0" not in r.placements
    r = solve(problem(tiny, service(3, slo=5, replicas=3, topology=Topology.GANG)))
    assert len(sites_of(r, "w0")) == 1


def test_spread_uses_at_least_min_sites(tiny):
    r = solve(problem(tiny, service(1, slo=5, replicas=3, topology=Topology.SPREAD, min_sites=2)))
    assert sites_of(r, "w0") == {"near", "green"}


def test_fractional_gpu_shares_share_one_physical_gpu(tiny):
    spec = WorkloadSpec(tenant="t", resources=Resources(1000, 1024, gpu_millis=400), replicas=2)
    r = solve(problem(tiny, spec))
    gpus = {(p.node, p.gpu_indices) for p in r.placements["w0"]}
    assert len(gpus) == 1  # both shares on the same GPU of the same node


@pytest.mark.parametrize("mip_bound", [True, False])
def test_reported_objective_equals_its_recomputation_and_bound_is_below(tiny, mip_bound):
    p = problem(tiny, service(1, slo=5, replicas=3), service(2, slo=2), service(4, slo=2))
    params = SolverParams(mip_bound=mip_bound)
    r = solve(p, params)
    assert (r.stats.mip_seconds is not None) is mip_bound
    assert r.objective == pytest.approx(evaluate(p, r.placements, params).objective)
    assert r.bound is not None and r.bound <= r.objective + 1e-9
    assert r.gap is not None and 0 <= r.gap < 0.05


def test_same_seed_gives_the_same_placement(tiny):
    p = problem(tiny, *(service(1 + i % 3, slo=5 if i % 2 else 2, replicas=2) for i in range(6)))
    a = solve(p, seed=7)
    b = solve(p, seed=7)
    assert a.placements == b.placements


def test_no_time_left_falls_back_to_the_greedy_answer(tiny):
    p = problem(tiny, service(1, slo=5, replicas=2))
    r = solve(p, deadline=time.monotonic() - 1)
    assert r.status is SolveStatus.FALLBACK
    assert r.stats.fallback
    assert sites_of(r, "w0") == {"green"}  # cheapest site first


def test_cpsat_given_no_time_keeps_the_rounded_lp_answer(tiny):
    p = problem(tiny, service(1, slo=5, replicas=2))
    r = solve(p, SolverParams(solver_parameters="max_time_in_seconds: 0.0"))
    assert r.status is SolveStatus.FEASIBLE
    assert "w0" in r.placements
    assert r.bound is not None and r.bound <= r.objective


def test_the_problem_cluster_is_not_changed(tiny):
    cluster = Cluster(tiny)
    solve(problem(tiny, service(2, slo=5, replicas=3), cluster=cluster))
    assert not cluster.awake.any()


def test_params_reject_unknown_keys_and_bad_values(tmp_path):
    path = tmp_path / "params.toml"
    path.write_text("policy = 'valley'\nlatency_weight = 3\n")
    with pytest.raises(ValueError, match="latency_weight: unknown parameter"):
        SolverParams.from_toml(path)
    with pytest.raises(ValueError, match="headroom_target"):
        SolverParams(headroom_target=1.5)
    path.write_text("time_limit_s = 2\nheadroom_target = 0.7\n")
    assert SolverParams.from_toml(path).headroom_target == 0.7


def test_a_workload_that_can_never_fit_does_not_inflate_the_gap(tiny):
    # regression: its penalty was in the objective but not in the bound (gap near 100%)
    p = problem(tiny, service(1, slo=5), service(1, slo=0.1))
    r = solve(p)
    assert r.unplaced["w1"].final
    assert r.breakdown.unplaced_cny_per_hour == 0
    assert r.gap is not None and r.gap < 0.01


def test_raw_cpsat_parameters_keep_the_time_limit_and_workers():
    # regression: parsing the raw text replaced every parameter, the time limit included
    from scheduler.solver.valley.search import cpsat_parameters

    sp = cpsat_parameters(SolverParams(solver_parameters="log_search_progress: true"), 3, 0.7, 10.0)
    assert sp.log_search_progress
    assert sp.max_time_in_seconds == pytest.approx(0.7)
    assert sp.num_workers == SolverParams().num_workers and sp.random_seed == 3
    sp = cpsat_parameters(SolverParams(solver_parameters="num_workers: 2"), 3, 0.7, 10.0)
    assert sp.num_workers == 2


def test_rounding_keeps_a_replica_the_lp_gives_almost_wholly():
    # regression: an LP value of 0.9999999999999999 lost its replica to floor()
    from scheduler.solver.valley.rounding import split

    hint = [0, 0]
    split(hint, [0, 1], [1.0, 0.9999999999999999], 2)
    assert hint == [1, 1]
    hint = [0, 0, 0]
    split(hint, [0, 1, 2], [0.5, 0.3, 0.2], 7)
    assert sum(hint) == 7 and hint[0] >= hint[1] >= hint[2]


def test_many_distinct_priorities_are_solved_and_the_highest_wins(tiny):
    # regression: 4.0 ** 599 overflowed, and CP-SAT coefficients left 64 bits
    specs = [service(0.25, slo=5, priority=i) for i in range(600)]
    r = solve(problem(tiny, *specs), SolverParams(time_limit_s=2))
    assert r.placements
    # 5 CPU nodes of 8 GiB hold 40 replicas of 1 GiB; 600 priorities share 8 levels of 75,
    # so the 40 places go to the top level
    assert len(r.placements) == 40
    assert min(int(wid[1:]) for wid in r.placements) >= 525


def test_a_pending_summary_names_what_stands_in_the_way_now(tiny):
    # regression: the summary quoted the first reason, a site that never qualifies
    cluster = Cluster(tiny)
    green_gpu = cluster.index["green/gpu-0000"]
    cluster.allocate(green_gpu, Resources(1000, 1024, gpus=2))
    spec = WorkloadSpec(tenant="t", resources=Resources(1000, 1024, gpus=1))
    u = solve(problem(tiny, spec, cluster=cluster)).unplaced["w0"]
    assert not u.final
    assert u.summary.startswith("does not fit now: green: gpus")


def test_with_a_gpu_target_shares_go_where_they_fragment_least(tiny):
    from scheduler.solver.fragmentation import RequestType

    cluster = Cluster(tiny)
    node = cluster.index["green/gpu-0000"]
    cluster.allocate(node, Resources(1000, 1024, gpu_millis=300), (0,))  # GPU 0: 700 free
    spec = WorkloadSpec(tenant="t", resources=Resources(1000, 1024, gpu_millis=400))
    # best fit takes GPU 0 (300 left: too small for the 500-millis work expected next)
    plain = solve(problem(tiny, spec, cluster=cluster))
    assert plain.placements["w0"][0].gpu_indices == (0,)
    # FGD with that expectation takes GPU 1: 700 and 600 left, both fit a 500 share
    target = (RequestType(Resources(1000, 1024, gpu_millis=500), 1.0),)
    p = Problem(tiny, cluster, (PendingWorkload("w0", spec),), gpu_target=target)
    assert solve(p).placements["w0"][0].gpu_indices == (1,)


def test_bound_stays_below_the_objective_when_a_site_is_already_above_its_headroom_target(tiny):
    # regression: the model counted the headroom a site had used before the cycle twice (in
    # the constant and in its headroom row), so the bound rose above the objective
    cluster = Cluster(tiny)
    for name in ("near/cpu-0000", "near/cpu-0001"):
        cluster.allocate(cluster.index[name], Resources(3500, 1024))  # 7 of 8 cores: > 85%
    params = SolverParams(headroom_cny_per_core_hour=10.0)
    p = problem(tiny, service(0.5, slo=2), cluster=cluster)
    r = solve(p, params)
    assert "w0" in r.placements
    assert r.objective == pytest.approx(evaluate(p, r.placements, params).objective)
    assert r.bound is not None and r.bound <= r.objective + 1e-9


def test_params_reject_negative_money_whatever_its_number_type(tmp_path):
    # regression: only float-typed values were checked, so TOML integers passed
    with pytest.raises(ValueError, match="unplaced_cny_per_replica_hour"):
        SolverParams(unplaced_cny_per_replica_hour=-100)
    path = tmp_path / "params.toml"
    for line, field in (
        ("unplaced_cny_per_replica_hour = -100", "unplaced_cny_per_replica_hour"),
        ("carbon_price_cny_per_tonne = -5", "carbon_price_cny_per_tonne"),
        ("num_workers = 1.5", "num_workers"),
        ("mip_bound = 1", "mip_bound"),
        ("repairs = ['consolidate', 'tidy-up']", r"repairs\[1\]"),
    ):
        path.write_text(line + "\n")
        with pytest.raises(ValueError, match=f"{path}: {field}"):
            SolverParams.from_toml(path)
    path.write_text("carbon_price_cny_per_tonne = 80\nrepairs = ['leftovers']\n")
    p = SolverParams.from_toml(path)
    assert p.carbon_price_cny_per_tonne == 80.0 and p.repairs == ("leftovers",)


def test_the_gap_splits_into_a_bound_side_and_a_packing_side_that_add_up(tiny):
    p = problem(tiny, service(1, slo=5, replicas=3), service(2, slo=2), service(4, slo=2))
    r = solve(p)
    parts = r.gap_parts()
    assert parts is not None and r.gap is not None
    bound_side, packing_side = parts
    assert bound_side + packing_side == pytest.approx(r.gap, abs=1e-12)
    assert bound_side >= -1e-9  # a decision of the model is never below its bound
    assert r.stats.decision_objective is not None


def test_work_that_fits_no_single_node_now_does_not_open_the_gap(tiny):
    # near has 3 cores free on each of its two nodes: 6 in all, room for a 4-core replica by
    # pool totals, on no node in fact. The bound used to count it placed (gap ~100%); the
    # node-level fit cut counts it left out, as the placement does
    cluster = Cluster(tiny)
    for name in ("near/cpu-0000", "near/cpu-0001"):
        cluster.allocate(cluster.index[name], Resources(1000, 1024))
    r = solve(problem(tiny, service(4, slo=2), cluster=cluster))
    assert "w0" not in r.placements and not r.unplaced["w0"].final
    assert r.bound is not None and r.bound <= r.objective + 1e-9
    assert r.gap is not None and r.gap < 0.01


# the relaxations and the packing alone: CP-SAT gets no time
NO_CPSAT = SolverParams(solver_parameters="max_time_in_seconds: 0")


def test_a_workload_that_fits_only_in_part_counts_whole_in_the_bound(tiny):
    # two 3-core replicas pinned to near, where one node has 2 of its 4 cores taken: one
    # replica fits, the workload does not. The LP places half of it and its bound misses half
    # the penalty; the MIP bound keeps the workloads placed integer and proves the whole
    cluster = Cluster(tiny)
    cluster.allocate(cluster.index["near/cpu-0000"], Resources(2000, 1024))
    pinned = WorkloadSpec(
        tenant="t", resources=Resources(3000, 1024), replicas=2, allowed_sites=("near",)
    )
    r = solve(problem(tiny, pinned, cluster=cluster), NO_CPSAT)
    assert "w0" not in r.placements and not r.unplaced["w0"].final
    assert r.stats.mip_status == "OPTIMAL" and r.stats.bound_source == "mip"
    assert r.gap is not None and r.gap < 0.01


def packed_on_one_pool(scenario, pool_key: str, wake: int, *specs: WorkloadSpec):
    """Pack the decision that puts every workload of ``specs`` wholly on the pool named
    ``pool_key``, waking ``wake`` of its nodes; the placements packing makes of it."""
    p = problem(scenario, *specs)
    params = SolverParams()
    elig = eligibility_of(scenario, p.cluster, ((w.id, w.spec) for w in p.workloads), params)
    index = NodeIndex(p.cluster)
    model = build_model(p, params, elig, index, 0.0)
    pool = next(i for i, pl in enumerate(p.cluster.pools) if pl.key == pool_key)
    counts = [0] * model.lm.size
    for c in model.classes:
        counts[c.k] = len(c.members)
        counts[c.x[pool]] = c.spec.replica_count * len(c.members)
    counts[model.pools[pool].wake] = wake
    state = PackingState(p, params, elig, index=index)
    pack(state, model, counts)
    return state.placements()


def hourly(value: float) -> str:
    """A scenario's 24 hourly values, all ``value`` (TOML)."""
    return "[" + ", ".join([str(value)] * 24) + "]"


OVERFLOW = f"""
name = "overflow"
origins = ["city"]

[sites.near]
pue = 1.5
price_cny_per_kwh = {hourly(1.0)}
carbon_kg_per_kwh = {hourly(0.6)}
latency_ms = {{ city = 1.0 }}
[[sites.near.pools]]
name = "cpu"
count = 2
cpu_millis = 4000
memory_mib = 8192
idle_watts = 100.0
max_watts = 300.0
[[sites.near.pools]]
name = "fat"
count = 1
cpu_millis = 64000
memory_mib = 262144
idle_watts = 2000.0
max_watts = 6000.0
[[sites.near.pools]]
name = "small"
count = 2
cpu_millis = 4000
memory_mib = 8192
idle_watts = 150.0
max_watts = 300.0
"""


def test_a_replica_that_overflows_its_pool_wakes_the_cheapest_pool_not_the_first():
    # the decision puts a 3-core replica and two 2.5-core ones on near/cpu: 8 cores, its two
    # nodes' total, but only two of them fit its nodes. The third goes to another pool of the
    # site: a "small" node (150 W idle), not the "fat" one listed before it (2 kW idle)
    scenario = parse_scenario(OVERFLOW, "overflow.toml")
    big = WorkloadSpec(tenant="t", resources=Resources(3000, 1024))
    mid = WorkloadSpec(tenant="t", resources=Resources(2500, 1024), replicas=2)
    placed = packed_on_one_pool(scenario, "near/cpu", 2, big, mid)
    nodes = [rp.node for reps in placed.values() for rp in reps]
    assert len(nodes) == 3 and sum(n.startswith("near/cpu-") for n in nodes) == 2
    assert not any(n.startswith("near/fat-") for n in nodes), nodes


def test_an_lp_out_of_time_leaves_a_greedy_decision_of_the_model_packed(tiny, monkeypatch):
    # GLOP stopped by its time limit (as at 50k replicas on a busy machine): the decision comes
    # from the same model greedily, cheapest pools first, and is packed and repaired; GANG and
    # SPREAD work is placed by the repairs
    monkeypatch.setattr(LinearModel, "solve_lp", lambda self, seconds: Relaxation("NOT_SOLVED"))
    specs = (
        service(1, slo=5, replicas=3),
        service(2, slo=2),
        service(1, slo=5, replicas=2, topology=Topology.GANG),
        service(1, slo=5, replicas=2, topology=Topology.SPREAD, min_sites=2),
    )
    p = problem(tiny, *specs)
    r = solve(p)
    assert r.stats.fallback and r.stats.lp_status == "NOT_SOLVED"
    assert set(r.placements) == {"w0", "w1", "w2", "w3"}
    assert sites_of(r, "w0") == {"green"}  # the cheaper site its SLO allows
    assert sites_of(r, "w1") == {"near"}  # the only one
    assert len(sites_of(r, "w2")) == 1 and len(sites_of(r, "w3")) == 2
    assert r.objective == pytest.approx(evaluate(p, r.placements, SolverParams()).objective)


def test_gpu_shares_that_do_not_tile_a_gpu_are_seen_by_the_bound(tiny):
    # green's GPU node has 2 GPUs: two 0.85 shares and a 0.25 share ask for 1.95 GPUs in sum
    # and two shares above half a GPU, which the millis and slot rows allow; on the GPUs, the
    # 0.25 share fits beside neither 0.85. The share cuts count each 0.85 as a whole GPU, so
    # the bound leaves one workload out, as the placement must
    def share(millis: int) -> WorkloadSpec:
        return WorkloadSpec(tenant="t", resources=Resources(1000, 1024, gpu_millis=millis))

    r = solve(problem(tiny, share(850), share(850), share(250)), NO_CPSAT)
    assert len(r.placements) == 2
    assert r.bound is not None and r.bound <= r.objective + 1e-9
    assert r.gap is not None and r.gap < 0.01


GPU_MODELS = f"""
name = "gpu-models"
origins = ["city"]

[sites.near]
pue = 1.5
price_cny_per_kwh = {hourly(2.0)}
carbon_kg_per_kwh = {hourly(0.6)}
latency_ms = {{ city = 1.0 }}
[[sites.near.pools]]
name = "a800"
count = 1
cpu_millis = 16000
memory_mib = 65536
gpus = 2
gpu_model = "A800"
idle_watts = 1500.0
max_watts = 2000.0
gpu_watts = 700.0

[sites.far]
pue = 1.1
price_cny_per_kwh = {hourly(0.5)}
carbon_kg_per_kwh = {hourly(0.3)}
latency_ms = {{ city = 5.0 }}
[[sites.far.pools]]
name = "a800"
count = 1
cpu_millis = 16000
memory_mib = 65536
gpus = 2
gpu_model = "A800"
idle_watts = 1500.0
max_watts = 2000.0
gpu_watts = 700.0
[[sites.far.pools]]
name = "h800"
count = 1
cpu_millis = 16000
memory_mib = 65536
gpus = 2
gpu_model = "H800"
idle_watts = 1500.0
max_watts = 2000.0
gpu_watts = 700.0
"""


def test_a_full_pool_keeps_the_replicas_that_have_only_dear_pools_elsewhere():
    # the decision puts three 1-GPU pods on far/a800 (two GPUs): one must go elsewhere. The
    # A800-only pod's other pool is near's (dear); the other pods may also use far/h800. So
    # the A800-only pod stays on far/a800 and an unconstrained one moves to far/h800
    scenario = parse_scenario(GPU_MODELS, "gpu-models.toml")
    r = Resources(1000, 1024, gpus=1)
    any_gpu = WorkloadSpec(tenant="t", resources=r)
    a800 = WorkloadSpec(tenant="t", resources=r, gpu_models=("A800",))
    placed = packed_on_one_pool(scenario, "far/a800", 1, any_gpu, any_gpu, a800)
    nodes = {wid: rp.node for wid, reps in placed.items() for rp in reps}
    assert nodes["w2"].startswith("far/a800")
    assert not any(n.startswith("near/") for n in nodes.values()), nodes
