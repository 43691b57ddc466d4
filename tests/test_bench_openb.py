"""The openb suite: trace readers, the peers on hand-made cases, and a toy run through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from scheduler.bench.openb import (
    OpenbFormatError,
    Pod,
    Simulation,
    arrivals,
    build_scenario,
    command,
    read_nodes,
    read_pods,
)
from scheduler.bench.openb_policies import PEERS, make_peer
from scheduler.domain import Cluster, Pool, Resources, Scenario, Site
from scheduler.solver.fragmentation import RequestType

DATA = Path(__file__).parent / "data" / "openb"
NODES = DATA / "nodes_tiny.csv"
PODS = DATA / "pods_tiny.csv"


def cluster_of(*pools: tuple[str, int, int, int, int, str]) -> Cluster:
    """One site; pools given as (name, count, cpu_millis, memory_mib, gpus, model)."""
    ps = tuple(
        Pool(name, "s", count, Resources(cpu, mem, gpus, gpus * 1000), gpu_model=model)
        for name, count, cpu, mem, gpus, model in pools
    )
    site = Site("s", 1.2, {"o": 0.0}, (0.5,) * 24, (0.5,) * 24, ps)
    return Cluster(Scenario("t", (site,), ("o",)))


# ----------------------------------------------------------------------------- readers


def test_read_pods_turns_num_gpu_and_gpu_milli_into_shares_and_whole_gpus():
    pods = {p.name: p for p in read_pods(PODS)}
    assert pods["tiny-pod-00"].resources == Resources(4000, 8192, gpus=1)  # 1 x 1000
    assert pods["tiny-pod-01"].resources == Resources(2000, 4096, gpu_millis=500)
    assert pods["tiny-pod-02"].resources == Resources(8000, 16384)
    assert pods["tiny-pod-04"].resources == Resources(16000, 32768, gpus=2)
    assert pods["tiny-pod-04"].gpu_models == ("V100",)
    assert pods["tiny-pod-05"].gpu_models == ("T4", "V100")
    assert pods["tiny-pod-09"].resources.memory_mib == 1  # 0 MiB counted as 1


def test_read_nodes_and_one_pool_per_node_shape():
    nodes = read_nodes(NODES)
    assert [n.gpus for n in nodes] == [0, 0, 2, 2, 4]
    scenario = build_scenario(nodes)
    pools = scenario.pools
    assert [(p.count, p.node.gpus, p.gpu_model) for p in pools] == [
        (2, 0, ""),
        (2, 2, "T4"),
        (1, 4, "V100"),
    ]
    assert len(Cluster(scenario)) == 5


@pytest.mark.parametrize(
    ("path", "line", "reason"),
    [
        (DATA / "pods_bad_gpu_milli.csv", 3, "gpu_milli must be <= 1000"),
        (DATA / "nodes_bad_field.csv", 3, "cpu_milli must be an integer"),
    ],
)
def test_malformed_lists_fail_with_file_line_and_reason(path, line, reason):
    reader = read_pods if "pods" in path.name else read_nodes
    with pytest.raises(OpenbFormatError) as err:
        reader(path)
    assert err.value.path == str(path)
    assert err.value.line == line
    assert reason in err.value.reason
    assert f"{path}:{line}:" in str(err.value)


def test_arrivals_follow_the_trace_then_draw_again_until_the_demand():
    pods = [Pod(f"p{i}", Resources(1000, 1024, gpu_millis=500)) for i in range(4)]
    seq = arrivals(pods, capacity_millis=3000, until=1.3, seed=1)
    # 3900 millis needed: 8 pods of 500; the list's 4 first, in order, then 4 draws
    assert len(seq) == 8
    assert seq[:4].tolist() == [0, 1, 2, 3]
    assert seq.tolist() == arrivals(pods, 3000, 1.3, seed=1).tolist()  # seeded


# ----------------------------------------------------------------------------- the peers


def choose(name: str, cluster: Cluster, r: Resources, target=None, seed=0):
    target = target or [RequestType(r, 1.0)]
    nodes = np.flatnonzero(cluster.fit_mask(r))
    return make_peer(name, cluster, seed, target).choose(cluster, nodes, r)


def test_best_fit_picks_the_fuller_node():
    c = cluster_of(("g", 2, 32000, 65536, 2, "T4"))
    c.allocate(1, Resources(16000, 32768, gpus=1))
    assert choose("best-fit", c, Resources(4000, 4096, gpu_millis=500))[0] == 1


def test_best_fit_sends_cpu_only_pods_to_cpu_nodes_first():
    # the GPU node is fuller in CPU, but its idle GPUs count as remaining resources
    c = cluster_of(("cpu", 1, 32000, 65536, 0, ""), ("g", 1, 32000, 65536, 2, "T4"))
    c.allocate(1, Resources(8000, 8192))
    assert choose("best-fit", c, Resources(4000, 4096))[0] == 0


def test_dot_product_picks_the_smallest_alignment_as_the_papers_simulator():
    # node 1 has little CPU left: the smaller product of free x request
    c = cluster_of(("g", 2, 32000, 65536, 2, "T4"))
    c.allocate(1, Resources(24000, 8192))
    assert choose("dot-product", c, Resources(4000, 4096, gpu_millis=500))[0] == 1


def test_gpu_packing_prefers_a_partly_used_gpu():
    # node 0: one GPU at 600 free; node 1: idle; node 2: a GPU at 900 free -> node 0, GPU 0
    c = cluster_of(("g", 3, 32000, 65536, 2, "T4"))
    c.allocate(0, Resources(1000, 1024, gpu_millis=400), (0,))
    c.allocate(2, Resources(1000, 1024, gpu_millis=100), (1,))
    node, gpus = choose("gpu-packing", c, Resources(1000, 1024, gpu_millis=500))
    assert (node, gpus) == (0, (0,))


def test_gpu_packing_prefers_a_used_node_for_whole_gpus():
    c = cluster_of(("g", 2, 32000, 65536, 2, "T4"))
    c.allocate(1, Resources(1000, 1024, gpu_millis=400), (0,))
    node, gpus = choose("gpu-packing", c, Resources(1000, 1024, gpus=1))
    assert (node, gpus) == (1, (1,))


def test_gpu_clustering_puts_a_pod_with_pods_of_the_same_request():
    c = cluster_of(("g", 3, 32000, 65536, 4, "T4"))
    peer = make_peer("gpu-clustering", c, 0, [RequestType(Resources(1, 1, gpus=1), 1.0)])
    half, quarter = Resources(1000, 1024, gpu_millis=500), Resources(1000, 1024, gpu_millis=250)
    for node, r in ((0, quarter), (0, quarter), (1, half)):
        c.allocate(node, r)
        peer.placed(c, node, r)
    nodes = np.flatnonzero(c.fit_mask(half))
    assert peer.choose(c, nodes, half)[0] == 1
    assert peer.choose(c, nodes, quarter)[0] == 0
    assert peer.choose(c, nodes, Resources(1000, 1024, gpus=1))[0] == 2  # idle before mixed


def test_random_is_seeded_and_only_picks_feasible_nodes():
    c = cluster_of(("g", 6, 8000, 65536, 1, "T4"))
    c.allocate(2, Resources(8000, 1024))
    picks = [choose("random", c, Resources(1000, 1024), seed=s)[0] for s in range(20)]
    assert 2 not in picks and len(set(picks)) > 1
    assert picks == [choose("random", c, Resources(1000, 1024), seed=s)[0] for s in range(20)]


def test_fgd_peer_picks_the_placement_that_fragments_least():
    # as in test_fragmentation: the 600-milli pod fills node 0's GPU 1 exactly
    c = cluster_of(("g", 2, 32000, 65536, 2, "T4"))
    c.allocate(0, Resources(1000, 1024, gpu_millis=400), (1,))
    share = Resources(1000, 1024, gpu_millis=600)
    target = [RequestType(share, 0.5), RequestType(Resources(1000, 1024, gpus=1), 0.5)]
    assert choose("fgd", c, share, target) == (0, (1,))
    assert choose("best-fit", c, share)[0] == 0


# ----------------------------------------------------------------------------- the suite


def test_every_policy_places_only_what_fits_on_the_toy_trace():
    sim = Simulation(read_nodes(NODES), read_pods(PODS))
    seq = arrivals(sim.pods, sim.capacity_millis, 1.3, 0)
    for name in PEERS:
        run = sim.run_peer(name, seq, 0)
        assert 0 < run.full_placed <= run.full_arrived <= run.arrived == len(seq)
        assert run.full_allocated_millis <= sim.capacity_millis
    run = sim.run_valley(seq, 0, window=4, time_limit_s=0.5)
    assert 0 < run.full_placed <= run.full_arrived


def test_cpu_only_pods_may_use_cpu_nodes_when_a_gpu_pod_of_any_model_came_first():
    # both list no GPU model: the nodes allowed for the GPU pod must not be reused for the CPU pod
    nodes = read_nodes(NODES)
    gpu_pod = Pod("g", Resources(1000, 1024, gpu_millis=500))
    cpu_pod = Pod("c", Resources(1000, 1024))
    sim = Simulation(nodes, [gpu_pod, cpu_pod])
    cpu_nodes = sim.empty.n_gpus == 0
    assert cpu_nodes.any()
    assert not sim.allowed(gpu_pod)[cpu_nodes].any()
    assert sim.allowed(cpu_pod).all()


def test_toy_run_through_the_cli_reports_consistent_numbers(tmp_path):
    plot = tmp_path / "openb.png"
    res = CliRunner().invoke(
        command,
        [
            "--nodes", str(NODES), "--pods", str(PODS), "--seeds", "2", "--window", "4",
            "--time-limit", "0.5", "--output", "json", "--plot", str(plot),
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["suite"] == "openb"
    assert doc["params"]["seeds"] == [0, 1]
    capacity = doc["params"]["gpu_capacity"]
    assert capacity == 8
    rows = {r["policy"]: r for r in doc["rows"]}
    assert set(rows) == {*PEERS, "valley"}
    for r in rows.values():
        assert r["pods_placed"] <= r["pods_arrived"]
        assert r["gpu_unallocated_at_full_demand"] == pytest.approx(capacity - r["gpus_allocated"])
        assert r["gpu_unallocated_at_full_demand"] <= r["gpu_unallocated_worst"] + 1e-9
        assert 0 <= r["gpus_allocated"] <= capacity
        assert r["seconds_per_pod"] > 0
    assert plot.stat().st_size > 0


def test_missing_node_list_is_a_clear_error(tmp_path):
    res = CliRunner().invoke(command, ["--nodes", str(tmp_path / "none.csv"), "--pods", str(PODS)])
    assert res.exit_code != 0
    assert "node list not found" in res.output


def test_several_pod_lists_run_in_one_go_with_a_row_per_list_and_policy(tmp_path):
    fewer = tmp_path / "openb_pod_list_fewer.csv"
    lines = PODS.read_text().splitlines()
    fewer.write_text("\n".join(lines[: max(2, len(lines) // 2)]) + "\n")
    plot = tmp_path / "lists.png"
    res = CliRunner().invoke(
        command,
        [
            "--nodes", str(NODES), "--pods", str(PODS), "--pods", str(fewer),
            "--policy", "fgd", "--policy", "best-fit", "--output", "json", "--plot", str(plot),
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["params"]["pods"] == [str(PODS), str(fewer)]
    assert sorted((r["pods"], r["policy"]) for r in doc["rows"]) == sorted(
        (name, policy) for name in (PODS.stem, "fewer") for policy in ("fgd", "best-fit")
    )
    assert plot.stat().st_size > 0


def test_all_names_every_variant_of_the_trace():
    from scheduler.bench.openb import VARIANTS, _pod_files

    files = _pod_files("all")
    assert [f.name for f in files] == [f"openb_pod_list_{v}.csv" for v in VARIANTS]
