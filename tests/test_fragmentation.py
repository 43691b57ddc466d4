"""FGD's fragmentation measure and node score, computed by hand on one- and two-node clusters."""

from __future__ import annotations

import numpy as np
import pytest

from scheduler.domain import Cluster, Pool, Resources, Scenario, Site, WorkloadSpec
from scheduler.solver.fragmentation import (
    FragmentationScorer,
    RequestHistory,
    RequestType,
    target_workload,
)

SHARE_500 = Resources(1000, 1024, gpu_millis=500)
SHARE_600 = Resources(1000, 1024, gpu_millis=600)
WHOLE_1 = Resources(1000, 1024, gpus=1)
CPU_ONLY = Resources(1000, 1024)


def cluster_of(*pools: tuple[str, int, int, int, str]) -> Cluster:
    """One site; pools given as (name, count, cpu_millis, gpus, model)."""
    ps = tuple(
        Pool(name, "s", count, Resources(cpu, 1 << 20, gpus, gpus * 1000), gpu_model=model)
        for name, count, cpu, gpus, model in pools
    )
    site = Site("s", 1.2, {"o": 0.0}, (0.5,) * 24, (0.5,) * 24, ps)
    return Cluster(Scenario("t", (site,), ("o",)))


def set_gpus(cluster: Cluster, node: int, free: list[int]) -> None:
    cluster.gpu_free[node, : len(free)] = free


def test_node_fragmentation_by_hand():
    # 2 GPUs free 1000 and 300; types: a half GPU (p=.5), a whole GPU (p=.25), CPU only (.25)
    # half GPU: GPU 1 (300 < 500) is a fragment -> 300; whole GPU: the partly used GPU -> 300;
    # CPU only: every free milli -> 1300. F = .5*300 + .25*300 + .25*1300 = 550
    c = cluster_of(("g", 1, 8000, 2, "T4"))
    set_gpus(c, 0, [1000, 300])
    target = [RequestType(SHARE_500, 0.5), RequestType(WHOLE_1, 0.25), RequestType(CPU_ONLY, 0.25)]
    assert FragmentationScorer(target).node_fragmentation(c).tolist() == [pytest.approx(550.0)]


def test_all_free_gpu_is_fragment_for_a_task_short_of_cpu_or_of_its_gpu_model():
    c = cluster_of(("g", 1, 8000, 2, "T4"))
    big_cpu = Resources(9000, 1024, gpu_millis=500)  # more CPU than the node has
    assert FragmentationScorer([RequestType(big_cpu, 1.0)]).node_fragmentation(c)[0] == 2000
    a100 = [RequestType(SHARE_500, 1.0, ("A100",))]
    assert FragmentationScorer(a100).node_fragmentation(c)[0] == 2000
    t4 = [RequestType(SHARE_500, 1.0, ("A100", "T4"))]
    assert FragmentationScorer(t4).node_fragmentation(c)[0] == 0


def test_types_of_one_shape_count_apart_when_only_some_accept_the_nodes_model():
    # GPUs free 1000 and 300; a half GPU on any model (p=.5): 300 below its share; the same
    # half GPU on A100 only (p=.5) cannot use this T4 node: all 1300. F = .5*300 + .5*1300
    c = cluster_of(("g", 1, 8000, 2, "T4"))
    set_gpus(c, 0, [1000, 300])
    target = [RequestType(SHARE_500, 0.5), RequestType(SHARE_500, 0.5, ("A100",))]
    assert FragmentationScorer(target).node_fragmentation(c)[0] == pytest.approx(800.0)


def test_fgd_picks_the_placement_that_fragments_least():
    # types: 600 millis (p=.5), one whole GPU (p=.5). Node 0 free [1000, 600], node 1 empty.
    # node 0 before: 600-type fits everywhere (0); whole-GPU type: partly used GPU -> 600. F=300
    #   600 on GPU 1 -> [1000, 0]: F = 0, growth -300
    #   600 on GPU 0 -> [400, 600]: 600-type frag 400; whole type cannot fit -> 1000. F=700 (+400)
    # node 1: [1000, 1000] F=0 -> [400, 1000]: 400 for both types, F=400 (+400)
    c = cluster_of(("g", 2, 8000, 2, "T4"))
    set_gpus(c, 0, [1000, 600])
    fgd = FragmentationScorer([RequestType(SHARE_600, 0.5), RequestType(WHOLE_1, 0.5)])
    growth, share_gpu = fgd.best_placement(c, np.asarray([0, 1]), SHARE_600)
    assert growth.tolist() == [pytest.approx(-300.0), pytest.approx(400.0)]
    assert share_gpu[0] == 1
    assert fgd.choose_gpus(c, 0, SHARE_600) == (1,)


def test_fgd_may_choose_another_gpu_than_best_fit():
    # free [700, 600], a 100-milli task, target: 600-milli tasks only.
    # best fit would take GPU 1 (600 -> 500: a 500 fragment); FGD takes GPU 0 (700 -> 600: none)
    c = cluster_of(("g", 1, 8000, 2, "T4"))
    set_gpus(c, 0, [700, 600])
    small = Resources(100, 100, gpu_millis=100)
    fgd = FragmentationScorer([RequestType(SHARE_600, 1.0)])
    assert c.choose_gpus(0, small) == (1,)
    assert fgd.choose_gpus(c, 0, small) == (0,)
    assert fgd(c, np.asarray([0]), small).tolist() == [0.0]


def test_cpu_only_work_grows_no_fragmentation_on_cpu_nodes_but_may_on_gpu_nodes():
    # the GPU node has 2000 millicores: after a 1500 task, 500 are left, short for the
    # 1000-millicore GPU type, so both of its GPUs become fragments (+2000 * p)
    c = cluster_of(("cpu", 1, 8000, 0, ""), ("g", 1, 2000, 2, "T4"))
    fgd = FragmentationScorer([RequestType(SHARE_500, 1.0)])
    growth = fgd(c, np.asarray([0, 1]), Resources(1500, 1024))
    assert growth.tolist() == [0.0, 2000.0]


def test_fill_mode_sees_gpus_that_cpu_would_strand():
    # 2 idle GPUs, 4000 millicores; a type of half a GPU with 2000 millicores: FGD sees no
    # fragment (it fits), but filling the node with it uses 2 tasks (CPU-bound) = 1000 millis,
    # leaving 1000 millis stranded
    c = cluster_of(("g", 1, 4000, 2, "T4"))
    t = [RequestType(Resources(2000, 1024, gpu_millis=500), 1.0)]
    assert FragmentationScorer(t, mode="fgd").node_fragmentation(c)[0] == 0
    assert FragmentationScorer(t, mode="fill").node_fragmentation(c)[0] == 1000
    assert FragmentationScorer(t, mode="fill+fgd").node_fragmentation(c)[0] == 1000


def test_valley_modes_weigh_a_type_by_the_share_of_gpus_its_model_allows():
    # 8 A100 GPUs and 2 T4 GPUs: a T4-only type reaches a fifth of them, so its frequency
    # counts five times as much as that of a type that accepts any model (total kept)
    c = cluster_of(("a", 4, 3000, 2, "A100"), ("t", 1, 8000, 2, "T4"))
    t = [RequestType(Resources(2000, 1024, gpus=1), 0.85), RequestType(WHOLE_1, 0.15, ("T4",))]
    w = FragmentationScorer(t, mode="fill+fgd").type_weights(c)
    assert w.tolist() == pytest.approx([0.85 / 1.6, 0.75 / 1.6])


def test_unconstrained_work_leaves_gpus_to_the_types_held_to_their_model_when_valley_scores():
    # A100 nodes: 2 GPUs, 3 cores; T4 node: 2 GPUs, 8 cores. Types: a whole GPU with 2 cores
    # (any model, p=.8) and a whole GPU on T4 only (p=.2): T4-only demand is 20% of the pods
    # but all of it lands on the T4 node, a fifth of the GPUs. Whole-GPU types count FGD's
    # fragment alone. On an A100 node the pod leaves 1 core: the first type loses both GPUs
    # (0 -> 1000), the T4-only type, which never could use them, sees 2000 -> 1000. The T4 node
    # keeps room for both types (0 -> 0).
    # Plain frequencies: .8 * 1000 - .2 * 1000 = +600, so FGD takes a T4 GPU. Weighted
    # (.8 / 1, .2 / .2, rescaled: .444, .556): 1000 * (.444 - .556) = -111: an A100 node.
    c = cluster_of(("a", 4, 3000, 2, "A100"), ("t", 1, 8000, 2, "T4"))
    pod = Resources(2000, 1024, gpus=1)
    t = [RequestType(pod, 0.8), RequestType(WHOLE_1, 0.2, ("T4",))]
    nodes = np.arange(len(c))
    valley = FragmentationScorer(t, mode="fill+fgd")(c, nodes, pod)
    assert c.pool_of(int(nodes[np.argmin(valley)])).gpu_model == "A100"
    assert valley[0] == pytest.approx(1000 * (0.8 - 1.0) / 1.8)
    # the paper's FGD keeps plain frequencies
    fgd = FragmentationScorer(t, mode="fgd")
    assert fgd(c, nodes, pod)[0] == pytest.approx(0.8 * 1000 - 0.2 * 1000)
    assert c.pool_of(int(nodes[np.argmin(fgd(c, nodes, pod))])).gpu_model == "T4"


def test_whole_gpu_work_counts_only_fgds_fragment_when_valley_scores():
    # one idle node, 2 GPUs, 2 cores; a whole-GPU type with 2 cores: one task takes every core,
    # stranding the other GPU. FGD sees no fragment (the type fits); the fill term would count
    # the stranded GPU, but for whole-GPU types Valley's score counts FGD's fragment alone.
    # A half-GPU type with 2 cores is stranded the same way and keeps the fill term.
    c = cluster_of(("g", 1, 2000, 2, "T4"))
    whole = [RequestType(Resources(2000, 1024, gpus=1), 1.0)]
    assert FragmentationScorer(whole, mode="fill+fgd").node_fragmentation(c)[0] == 0
    assert FragmentationScorer(whole, mode="fill").node_fragmentation(c)[0] == 1000
    share = [RequestType(Resources(2000, 1024, gpu_millis=500), 1.0)]
    assert FragmentationScorer(share, mode="fill+fgd").node_fragmentation(c)[0] == 1500


def test_whole_gpu_tasks_take_fully_free_gpus():
    c = cluster_of(("g", 1, 8000, 4, "T4"))
    set_gpus(c, 0, [400, 1000, 1000, 1000])
    fgd = FragmentationScorer([RequestType(WHOLE_1, 1.0)])
    assert fgd.choose_gpus(c, 0, Resources(1000, 1024, gpus=2)) == (1, 2)


def test_cached_fragmentation_follows_cluster_changes():
    c = cluster_of(("g", 1, 8000, 2, "T4"))
    fgd = FragmentationScorer([RequestType(WHOLE_1, 1.0)])
    assert fgd.cluster_fragmentation(c) == 0
    c.allocate(0, SHARE_500, (0,))
    assert fgd.cluster_fragmentation(c) == 500  # the half-used GPU
    c.release(0, SHARE_500, (0,))
    assert fgd.cluster_fragmentation(c) == 0


def test_target_workload_counts_request_types_most_frequent_first():
    reqs = [SHARE_500] * 3 + [(WHOLE_1, ["T4"])] + [CPU_ONLY] * 4
    t = target_workload(reqs)
    assert [(x.resources, x.frequency, x.gpu_models) for x in t] == [
        (CPU_ONLY, 0.5, ()),
        (SHARE_500, 0.375, ()),
        (WHOLE_1, 0.125, ("T4",)),
    ]
    top = target_workload(reqs, coverage=0.8)  # the two types that cover 7 of 8 requests
    assert [x.resources for x in top] == [CPU_ONLY, SHARE_500]
    assert sum(x.frequency for x in top) == pytest.approx(1.0)


def test_scorer_rejects_an_empty_target_or_unknown_mode():
    with pytest.raises(ValueError):
        FragmentationScorer([])
    with pytest.raises(ValueError, match="mode"):
        FragmentationScorer([RequestType(WHOLE_1, 1.0)], mode="magic")


def test_scores_kept_between_calls_follow_node_changes():
    # the second call for the same request must see node 0's new state, as a fresh scorer does
    c = cluster_of(("g", 2, 8000, 2, "T4"))
    target = [RequestType(SHARE_600, 0.5), RequestType(WHOLE_1, 0.5)]
    kept = FragmentationScorer(target)
    nodes = np.asarray([0, 1])
    first = kept(c, nodes, SHARE_500).tolist()
    c.allocate(0, SHARE_500, (0,))
    again = kept.best_placement(c, nodes, SHARE_500)
    fresh = FragmentationScorer(target).best_placement(c, nodes, SHARE_500)
    assert again[0].tolist() == fresh[0].tolist() != first
    assert again[1].tolist() == fresh[1].tolist()


def test_request_history_tracks_recent_gpu_requests_and_refreshes_in_steps():
    half = Resources(1000, 1024, gpu_millis=500)
    whole = Resources(4000, 8192, gpus=1)
    history = RequestHistory(window=10, refresh=4)
    assert history.target() == ()
    history.add(WorkloadSpec(tenant="t", resources=Resources(1000, 1024), replicas=5))  # no GPU
    assert history.target() == ()
    history.add(WorkloadSpec(tenant="t", resources=half, replicas=3))
    first = history.target()
    assert first == (RequestType(half, 1.0),)
    history.add(WorkloadSpec(tenant="t", resources=whole, replicas=3, gpu_models=("H800",)))
    assert history.target() is first  # 3 new GPU replicas < refresh 4: the same tuple
    history.add(WorkloadSpec(tenant="t", resources=whole, replicas=1, gpu_models=("H800",)))
    assert {(t.resources, t.frequency, t.gpu_models) for t in history.target()} == {
        (whole, 4 / 7, ("H800",)),
        (half, 3 / 7, ()),
    }
    # the window keeps the last 10 GPU replicas only
    history.add(WorkloadSpec(tenant="t", resources=whole, replicas=10))
    assert history.target() == (RequestType(whole, 1.0),)
