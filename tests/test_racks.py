"""Racks: failure domains beyond the node (scenario file, cluster, the objective's soft
preference for spreading a service over racks, and its bound)."""

from __future__ import annotations

import pytest

from scheduler.domain import (
    Cluster,
    ReplicaPlacement,
    Resources,
    ScenarioError,
    WorkloadKind,
    WorkloadSpec,
    load_scenario,
    parse_scenario,
)
from scheduler.service.sites import summarize
from scheduler.solver import SolverParams, solve
from scheduler.solver.objective import evaluate
from tests.conftest import TINY
from tests.test_solver import problem
from tests.test_spread_packing import ONE_POOL

# near: two racks of one node each; green: its three CPU nodes in racks a (0, 1) and b (2)
RACKED = TINY.replace(
    "max_watts = 300.0\n\n[sites.green]", "max_watts = 300.0\nrack_size = 1\n\n[sites.green]", 1
).replace(
    'name = "cpu"\ncount = 3',
    'name = "cpu"\ncount = 3\nracks = [{ name = "a", first = 0, last = 1 }, '
    '{ name = "b", first = 2, last = 2 }]',
    1,
)


@pytest.fixture
def racked():
    return parse_scenario(RACKED, "racked.toml")


def service(replicas: int, **kw: object) -> WorkloadSpec:
    return WorkloadSpec(
        tenant="t",
        replicas=replicas,
        **{"kind": WorkloadKind.SERVICE, "resources": Resources(500, 256), **kw},  # type: ignore[arg-type]
    )


def test_a_node_stands_in_the_rack_of_its_pool_range_or_size(racked):
    cluster = Cluster(racked)
    racks = {cluster.node_names[i]: cluster.rack_of(i) for i in range(len(cluster))}
    assert racks["near/cpu-0000"] == "cpu-r00" and racks["near/cpu-0001"] == "cpu-r01"
    assert [racks[f"green/cpu-000{k}"] for k in range(3)] == ["a", "a", "b"]
    assert racks["green/gpu-0000"] == ""  # no rack: a failure domain of its own
    assert len(set(cluster.node_rack.tolist())) == 5


def test_the_default_scenario_has_racks_of_40_nodes():
    cluster = Cluster(load_scenario().scaled({"etown/cpu": 0.1}))
    etown = [cluster.rack_of(i) for i in range(len(cluster)) if cluster.site_of(i) == "etown"]
    assert etown[:41].count("cpu-r00") == 40 and etown[40] == "cpu-r01"


def test_scaling_a_pool_cuts_its_rack_ranges_to_its_nodes(racked):
    pool = racked.scaled({"green/cpu": 0.34}).site("green").pools[0]
    assert pool.count == 1 and [r.name for r in pool.racks] == ["a"]
    assert pool.racks[0].last == 0


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("count = 3\n", 'count = 3\nrack = "x"\n', "give one of rack, rack_size, racks"),
        ("last = 1 }", "last = 3 }", "the pool has nodes 0..2 (got 3)"),
        ("first = 2, last = 2", "first = 1, last = 2", "overlap racks[0] (a)"),
        ('name = "b"', 'name = "b/c"', "without '/'"),
        ("last = 1 }", "last = 1, size = 2 }", "unknown key"),
        ("first = 2, last = 2", "first = 2, last = 1", "must be >= first (2)"),
    ],
)
def test_broken_racks_fail_naming_the_key(old, new, message):
    assert old in RACKED
    with pytest.raises(ScenarioError) as err:
        parse_scenario(RACKED.replace(old, new, 1), "racks.toml")
    assert err.value.key.startswith("sites.green.pools[0].")
    assert message in str(err.value)


def test_a_rack_size_below_one_is_refused():
    with pytest.raises(ScenarioError, match="rack_size"):
        parse_scenario(RACKED.replace("rack_size = 1", "rack_size = 0"), "racks.toml")


def placed_on(*nodes: str) -> tuple[ReplicaPlacement, ...]:
    return tuple(ReplicaPlacement(i, n.split("/")[0], n, 1.0, ()) for i, n in enumerate(nodes))


def test_each_service_replica_sharing_a_rack_costs_the_rack_spread_weight(racked):
    params = SolverParams(rack_spread_cny_per_replica_hour=0.5)
    p = problem(racked, service(3), service(3, kind=WorkloadKind.BATCH))
    same = evaluate(
        p, {"w0": placed_on("green/cpu-0000", "green/cpu-0001", "green/cpu-0000")}, params
    )
    spread = evaluate(
        p, {"w0": placed_on("green/cpu-0000", "green/cpu-0002", "near/cpu-0000")}, params
    )
    batch = evaluate(
        p, {"w1": placed_on("green/cpu-0000", "green/cpu-0001", "green/cpu-0000")}, params
    )
    assert same.rack_spread_cny_per_hour == pytest.approx(1.0)  # 3 replicas, 1 rack
    assert spread.rack_spread_cny_per_hour == 0.0
    assert batch.rack_spread_cny_per_hour == 0.0
    assert same.objective - spread.objective == pytest.approx(
        1.0
        + same.energy_cny_per_hour
        + same.carbon_cny_per_hour
        - spread.energy_cny_per_hour
        - spread.carbon_cny_per_hour
        + same.latency_cny_per_hour
        - spread.latency_cny_per_hour
        + same.headroom_cny_per_hour
        - spread.headroom_cny_per_hour
    )


def test_a_service_spreads_over_the_racks_of_its_site(racked):
    # two replicas, one a node: green's nodes 0 and 1 share rack a, so one goes to node 2
    r = solve(problem(racked, service(2, allowed_sites=("green",))), SolverParams())
    nodes = sorted(rp.node for rp in r.placements["w0"])
    assert nodes[-1] == "green/cpu-0002", nodes


def test_the_bound_counts_the_replicas_that_must_share_a_rack(racked):
    # four replicas, at most two a node, in green's two racks: at least two share a rack,
    # whatever the placement; the bound knows it, so the gap stays closed
    params = SolverParams(rack_spread_cny_per_replica_hour=5.0)
    r = solve(problem(racked, service(4, allowed_sites=("green",))), params)
    assert r.breakdown.rack_spread_cny_per_hour >= 10.0
    assert r.bound is not None and r.bound <= r.objective + 1e-6
    assert r.gap is not None and r.gap < 0.01, (r.objective, r.bound)


def test_listed_nodes_carry_their_rack(racked):
    sites = summarize(Cluster(racked), 12, 1, include_nodes=True)
    racks = {n.name: n.rack for s in sites for n in s.nodes}
    assert racks["green/cpu-0002"] == "b" and racks["green/gpu-0000"] == ""


# one site, ten 4-core nodes, each in a rack of its own
TEN_RACKS = ONE_POOL.replace("count = 2", "count = 10").replace(
    "max_watts = 300.0", "max_watts = 300.0\nrack_size = 1"
)


def test_services_sharing_nodes_take_one_slot_a_node_in_turn_and_share_no_rack():
    # four 3-replica services of one shape fill three 4-slot nodes: served whole in turn,
    # two of each would share a node (and its rack); one a node each, none does
    scenario = parse_scenario(TEN_RACKS, "ten-racks.toml")
    specs = [service(3, resources=Resources(1000, 1024)) for _ in range(4)]
    r = solve(problem(scenario, *specs), SolverParams())
    assert len({rp.node for reps in r.placements.values() for rp in reps}) == 3
    assert all(len({rp.node for rp in reps}) == 3 for reps in r.placements.values())
    assert r.breakdown.rack_spread_cny_per_hour == 0.0
