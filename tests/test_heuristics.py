"""Each peer policy on a hand-made case of the ``tiny`` scenario where its choice is known.

``tiny``: site ``near`` (dear, 1 ms from ``city``) has near/cpu-0000..0001; site ``green``
(cheap and green, 4 ms from ``city``) has green/cpu-0000..0002 and one GPU node. Every CPU node
has 4 cores and 8 GiB; CPU-only work stays off the GPU node by default.
"""

from __future__ import annotations

from collections import Counter

import pytest

from scheduler.bench.checker import check_result
from scheduler.domain import Cluster, Resources, Scenario, Topology, WorkloadSpec
from scheduler.solver import PendingWorkload, PlacementResult, Problem, SolverParams, solve

PEERS = ("first-fit", "best-fit", "kube", "cheapest-first")
CORE = Resources(1000, 1024)
NODE = Resources(4000, 1024)  # one replica fills a CPU node


def run(
    scenario: Scenario,
    policy: str,
    *specs: WorkloadSpec,
    used: dict[str, int] | None = None,
) -> PlacementResult:
    """Solve ``specs`` (ids w0, w1, ...) with ``policy`` on a cluster where ``used`` maps node
    names to millicores already allocated."""
    cluster = Cluster(scenario)
    for node, cpu in (used or {}).items():
        cluster.allocate(cluster.index[node], Resources(cpu, 512))
    problem = Problem(
        scenario, cluster, tuple(PendingWorkload(f"w{i}", s) for i, s in enumerate(specs))
    )
    result = solve(problem, SolverParams(policy=policy))
    assert check_result(problem, result, cpu_on_gpu_nodes=False) == []
    return result


def nodes(result: PlacementResult, wid: str = "w0") -> list[str]:
    return [rp.node for rp in sorted(result.placements[wid], key=lambda rp: rp.replica)]


def spec(r: Resources = CORE, n: int = 1, **kw: object) -> WorkloadSpec:
    return WorkloadSpec(tenant="t", resources=r, replicas=n, origin="city", **kw)  # type: ignore[arg-type]


def test_first_fit_takes_the_first_node_in_scenario_order(tiny):
    assert nodes(run(tiny, "first-fit", spec())) == ["near/cpu-0000"]


def test_first_fit_skips_a_node_without_room_and_takes_the_next(tiny):
    used = {"near/cpu-0000": 3500}
    assert nodes(run(tiny, "first-fit", spec(), used=used)) == ["near/cpu-0001"]
    # a replica small enough still goes to the first node
    small = spec(Resources(500, 256))
    assert nodes(run(tiny, "first-fit", small, used=used)) == ["near/cpu-0000"]


def test_best_fit_takes_the_fuller_node(tiny):
    used = {"near/cpu-0000": 1000, "near/cpu-0001": 2000}
    assert nodes(run(tiny, "best-fit", spec(), used=used)) == ["near/cpu-0001"]


def test_best_fit_does_not_take_a_fuller_node_without_room(tiny):
    used = {"near/cpu-0000": 1000, "near/cpu-0001": 3500}
    assert nodes(run(tiny, "best-fit", spec(), used=used)) == ["near/cpu-0000"]


def test_kube_least_allocated_takes_the_emptier_node(tiny):
    used = {"near/cpu-0000": 2000, "near/cpu-0001": 1000}
    near_only = spec(allowed_sites=("near",))
    assert nodes(run(tiny, "kube", near_only, used=used)) == ["near/cpu-0001"]


def test_kube_spreads_replicas_over_empty_nodes(tiny):
    # LeastAllocated: each replica goes to a still-empty node, across both sites
    placed = nodes(run(tiny, "kube", spec(n=5)))
    assert sorted(placed) == [
        "green/cpu-0000",
        "green/cpu-0001",
        "green/cpu-0002",
        "near/cpu-0000",
        "near/cpu-0001",
    ]


def test_kube_filters_by_slo_before_scoring(tiny):
    # green nodes are emptier, but a 2 ms SLO from city leaves only near
    used = {"near/cpu-0000": 2000, "near/cpu-0001": 1000}
    critical = spec(max_latency_ms=2.0)
    assert nodes(run(tiny, "kube", critical, used=used)) == ["near/cpu-0001"]


def test_cheapest_first_takes_the_cheaper_site(tiny):
    result = run(tiny, "cheapest-first", spec(n=2))
    assert {rp.site for rp in result.placements["w0"]} == {"green"}


def test_cheapest_first_overflows_to_the_next_site_when_full(tiny):
    # four node-sized replicas: green's three CPU nodes, then one in near
    result = run(tiny, "cheapest-first", spec(NODE, 4))
    assert Counter(rp.site for rp in result.placements["w0"]) == {"green": 3, "near": 1}


@pytest.mark.parametrize("policy", PEERS)
def test_gang_goes_whole_into_one_site(tiny, policy):
    # three node-sized replicas fit only green (near has two nodes)
    result = run(tiny, policy, spec(NODE, 3, topology=Topology.GANG))
    assert {rp.site for rp in result.placements["w0"]} == {"green"}
    assert len(result.placements["w0"]) == 3


@pytest.mark.parametrize("policy", PEERS)
def test_gang_that_fits_no_single_site_is_not_placed_at_all(tiny, policy):
    # four node-sized replicas would fit both sites together, but no single one
    result = run(tiny, policy, spec(NODE, 4, topology=Topology.GANG), spec())
    assert "w0" not in result.placements
    assert result.unplaced["w0"].summary
    assert "w1" in result.placements  # and it leaves nothing behind


@pytest.mark.parametrize("policy", PEERS)
def test_gang_that_does_not_fit_now_leaves_no_partial_placement(tiny, policy):
    # green has room for two node-sized replicas now, near for two: a gang of three fits neither
    used = {"green/cpu-0000": 1000}
    result = run(tiny, policy, spec(NODE, 3, topology=Topology.GANG), used=used)
    assert result.placements == {}
    assert result.unplaced["w0"].reasons


@pytest.mark.parametrize("policy", PEERS)
def test_spread_uses_min_sites_distinct_sites(tiny, policy):
    result = run(tiny, policy, spec(n=2, topology=Topology.SPREAD, min_sites=2))
    assert {rp.site for rp in result.placements["w0"]} == {"near", "green"}


@pytest.mark.parametrize("policy", PEERS)
def test_spread_is_not_placed_when_one_site_has_no_room(tiny, policy):
    full = {"near/cpu-0000": 4000, "near/cpu-0001": 4000}
    result = run(tiny, policy, spec(n=2, topology=Topology.SPREAD, min_sites=2), used=full)
    assert result.placements == {}
    assert result.unplaced["w0"].reasons
