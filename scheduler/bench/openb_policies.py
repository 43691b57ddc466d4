"""The peers of the ``openb`` suite: the GPU-sharing schedulers of the FGD paper (Weng et al.,
USENIX ATC'23), written from its descriptions and checked against the behaviour of the authors'
simulator (hkust-adsl/kubernetes-scheduler-simulator, ``pkg/simulator/plugin/*_score.go``).

Each policy picks, for one pod, a node among the candidates (nodes whose GPU model the pod
accepts and where it fits now) and the GPUs it takes there. Lower scores win; ties are broken
at random with the policy's seeded generator, as kube-scheduler does among equal scores.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from scheduler.domain import GPU_MILLIS, Cluster, Resources
from scheduler.solver.fragmentation import FragmentationScorer, RequestType

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

PEERS = (
    "random",
    "best-fit",
    "dot-product",
    "gpu-packing",
    "gpu-clustering",
    "fgd",
    "valley-packing",
)


class Peer:
    """A one-pod-at-a-time placement rule."""

    name = "peer"

    def __init__(self, cluster: Cluster, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def score(self, cluster: Cluster, nodes: IntArray, r: Resources) -> FloatArray:
        raise NotImplementedError

    def gpus(self, cluster: Cluster, node: int, r: Resources) -> tuple[int, ...]:
        """The GPUs the pod takes on the chosen node: the fullest GPU that fits for a share
        (best fit keeps whole GPUs free), the first free ones for whole GPUs."""
        return cluster.choose_gpus(node, r)

    def choose(
        self, cluster: Cluster, nodes: IntArray, r: Resources
    ) -> tuple[int, tuple[int, ...]]:
        scores = self.score(cluster, nodes, r)
        best = np.flatnonzero(scores <= scores.min() + 1e-9)
        node = int(nodes[best[0] if len(best) == 1 else self.rng.choice(best)])
        return node, self.gpus(cluster, node, r)

    def placed(self, cluster: Cluster, node: int, r: Resources) -> None:
        """Told after every placement (for policies that keep state of their own)."""


class RandomPeer(Peer):
    """Any feasible node."""

    name = "random"

    def score(self, cluster: Cluster, nodes: IntArray, r: Resources) -> FloatArray:
        return np.zeros(len(nodes))


class BestFitPeer(Peer):
    """The node with the least weighted remaining resources after placement: CPU, memory and
    GPU, each normalised by the largest node of the cluster and weighted equally. GPU free
    capacity counts for CPU-only pods too, so they go to CPU nodes first (as in the paper)."""

    name = "best-fit"

    def __init__(self, cluster: Cluster, seed: int) -> None:
        super().__init__(cluster, seed)
        self.max_cpu = float(cluster.cap_cpu.max())
        self.max_mem = float(cluster.cap_mem.max())
        self.max_gpu = float(max(1, cluster.n_gpus.max()) * GPU_MILLIS)

    def score(self, cluster: Cluster, nodes: IntArray, r: Resources) -> FloatArray:
        gfree = np.maximum(cluster.gpu_free[nodes], 0).sum(axis=1)
        return np.asarray(
            (cluster.free_cpu[nodes] - r.cpu_millis) / self.max_cpu
            + (cluster.free_mem[nodes] - r.memory_mib) / self.max_mem
            + (gfree - r.gpu_demand_millis) / self.max_gpu,
            dtype=np.float64,
        )


class DotProductPeer(Peer):
    """Tetris's alignment score: the dot product of the node's free resources and the pod's
    request, both normalised by the node's capacity. As in the paper's simulator
    (``dot_product_score.go``: "the larger the dot product, the lower the score"), the node with
    the smallest product wins, which packs pods onto nodes with little room left."""

    name = "dot-product"

    def score(self, cluster: Cluster, nodes: IntArray, r: Resources) -> FloatArray:
        cap_cpu = cluster.cap_cpu[nodes].astype(np.float64)
        cap_mem = cluster.cap_mem[nodes].astype(np.float64)
        cap_gpu = np.maximum(cluster.n_gpus[nodes], 1) * float(GPU_MILLIS)
        gfree = np.maximum(cluster.gpu_free[nodes], 0).sum(axis=1)
        dot = (
            (cluster.free_cpu[nodes] / cap_cpu) * (r.cpu_millis / cap_cpu)
            + (cluster.free_mem[nodes] / cap_mem) * (r.memory_mib / cap_mem)
            + (gfree / cap_gpu) * (r.gpu_demand_millis / cap_gpu)
        )
        return np.asarray(dot, dtype=np.float64)


class GpuPackingPeer(Peer):
    """Prefer GPUs already partly used (the one with the least free share), then nodes
    already partly used, then idle nodes (smaller first). CPU-only pods: no preference."""

    name = "gpu-packing"

    def score(self, cluster: Cluster, nodes: IntArray, r: Resources) -> FloatArray:
        if not r.wants_gpu:
            return np.zeros(len(nodes))
        g = cluster.gpu_free[nodes]
        n = cluster.n_gpus[nodes]
        fully_free = (g == GPU_MILLIS).sum(axis=1)
        idle = fully_free == n
        score = np.where(idle, 2.0 + n / 100.0, 1.0)  # idle nodes last, small ones first
        if r.gpu_millis:
            shared_ok = (g >= r.gpu_millis) & (g < GPU_MILLIS)
            best_shared = np.where(shared_ok, g, GPU_MILLIS * 10).min(axis=1)
            score = np.where(shared_ok.any(axis=1), best_shared / (10.0 * GPU_MILLIS), score)
        return np.asarray(score, dtype=np.float64)

    def gpus(self, cluster: Cluster, node: int, r: Resources) -> tuple[int, ...]:
        if r.gpu_millis:
            g = cluster.gpu_free[node]
            ok = np.flatnonzero(g >= r.gpu_millis)
            return (int(ok[np.argmin(g[ok])]),)  # the partly used GPU with least room first
        return cluster.choose_gpus(node, r)


class GpuClusteringPeer(Peer):
    """Pack pods with the same GPU request together: nodes holding only that request first,
    then nodes holding it among others, then idle nodes, then nodes holding other requests;
    within a tier, the node with the least free GPU. CPU-only pods: no preference."""

    name = "gpu-clustering"

    def __init__(self, cluster: Cluster, seed: int) -> None:
        super().__init__(cluster, seed)
        self.tags: list[Counter[tuple[int, int]]] = [Counter() for _ in range(len(cluster))]
        self.max_gpu = float(max(1, cluster.n_gpus.max()) * GPU_MILLIS)

    @staticmethod
    def tag(r: Resources) -> tuple[int, int]:
        return (r.gpus, r.gpu_millis)

    def score(self, cluster: Cluster, nodes: IntArray, r: Resources) -> FloatArray:
        if not r.wants_gpu:
            return np.zeros(len(nodes))
        t = self.tag(r)
        tier = np.empty(len(nodes))
        for k, node in enumerate(nodes.tolist()):
            tags = self.tags[node]
            if tags.get(t):
                tier[k] = 0.0 if len(tags) == 1 else 1.0
            else:
                tier[k] = 2.0 if not tags else 3.0
        gfree = np.maximum(cluster.gpu_free[nodes], 0).sum(axis=1)
        return np.asarray(tier + gfree / (2.0 * self.max_gpu), dtype=np.float64)

    def placed(self, cluster: Cluster, node: int, r: Resources) -> None:
        if r.wants_gpu:
            self.tags[node][self.tag(r)] += 1


class FgdPeer(Peer):
    """Fragmentation Gradient Descent: the node and GPU whose placement grows the node's
    expected fragmentation (for the trace's request-type distribution) the least."""

    name = "fgd"
    mode = "fgd"

    def __init__(self, cluster: Cluster, seed: int, target: Sequence[RequestType]) -> None:
        super().__init__(cluster, seed)
        self.scorer = FragmentationScorer(target, mode=self.mode)

    def choose(
        self, cluster: Cluster, nodes: IntArray, r: Resources
    ) -> tuple[int, tuple[int, ...]]:
        growth, share_gpu = self.scorer.best_placement(cluster, nodes, r)
        best = np.flatnonzero(growth <= growth.min() + 1e-9)
        k = int(best[0] if len(best) == 1 else self.rng.choice(best))
        node = int(nodes[k])
        return node, self.scorer.gpus_for(cluster, node, r, int(share_gpu[k]))


class ValleyPackingPeer(FgdPeer):
    """The GPU packing proposed for Valley: FGD's fragment plus the GPU millis a node would
    strand if filled with each request type alone (``FragmentationScorer`` mode ``fill+fgd``),
    which also sees GPUs stranded by CPU or memory running out."""

    name = "valley-packing"
    mode = "fill+fgd"


def make_peer(name: str, cluster: Cluster, seed: int, target: Sequence[RequestType]) -> Peer:
    makers: dict[str, Callable[[], Peer]] = {
        "random": lambda: RandomPeer(cluster, seed),
        "best-fit": lambda: BestFitPeer(cluster, seed),
        "dot-product": lambda: DotProductPeer(cluster, seed),
        "gpu-packing": lambda: GpuPackingPeer(cluster, seed),
        "gpu-clustering": lambda: GpuClusteringPeer(cluster, seed),
        "fgd": lambda: FgdPeer(cluster, seed, target),
        "valley-packing": lambda: ValleyPackingPeer(cluster, seed, target),
    }
    if name not in makers:
        raise ValueError(f"unknown peer {name!r} (one of {', '.join(PEERS)})")
    return makers[name]()
