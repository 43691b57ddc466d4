"""Fragmentation-aware GPU packing: the node score of Fragmentation Gradient Descent (FGD).

Weng et al., "Beware of Fragmentation: Scheduling GPU-Sharing Workloads with Fragmentation
Gradient Descent", USENIX ATC'23. The target workload is a distribution of request types m
with frequencies p_m. For a node n, the fragment F_n(m) is the free GPU capacity (in millis)
that a task of type m cannot use there:

- all of it if m asks for no GPU, or cannot run on n at all (GPU model not allowed, CPU or
  memory short, no GPU with enough free share, too few whole GPUs free);
- otherwise the free share of every GPU too small for m: for a share of one GPU, the GPUs
  whose free share is below it; for whole GPUs, every partly used GPU.

The node's expected fragmentation is F_n = sum_m p_m F_n(m). FGD places a replica on the node
(and GPU) whose F_n grows the least. ``FragmentationScorer`` is a ``greedy.NodeScorer``: it
returns that growth for every candidate node (lower is better) and, with ``best_placement``,
the GPUs that achieve it.

FGD weighs types by how often they come, as if each could use any GPU. A type held to a GPU
model puts all its demand on that model's GPUs: the Valley modes weigh it by its frequency over
the share of the cluster's GPUs it may use, so GPUs that only a few constrained types can use
are kept for them (the paper's FGD, mode "fgd", keeps plain frequencies).
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from scheduler.domain import GPU_MILLIS, Cluster, Resources, WorkloadSpec

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


# "fgd": the paper's fragment F_n(m). "fill": the free GPU millis a node would still hold after
# taking as many tasks of type m as its GPUs, CPU and memory allow (a smoother measure that also
# sees GPUs stranded by CPU or memory running out). "fill+fgd": their sum for the types that
# share a GPU, the FGD fragment alone for whole-GPU types (see ``FragmentationScorer``). The two
# Valley modes also weigh each type by the share of the cluster's GPUs it may use
# (``type_weights``).
MODES = ("fgd", "fill", "fill+fgd")
# distinct requests whose per-node scores are kept (least recently used dropped first)
CACHED_REQUESTS = 256


@dataclass(frozen=True, slots=True)
class RequestType:
    """One kind of replica of the target workload and how often it comes (frequencies of a
    target workload sum to 1). ``gpu_models`` empty means any model."""

    resources: Resources
    frequency: float
    gpu_models: tuple[str, ...] = ()


def target_workload(
    requests: Iterable[Resources | tuple[Resources, Sequence[str]]], *, coverage: float = 1.0
) -> tuple[RequestType, ...]:
    """The distribution of request types in ``requests`` (each a ``Resources`` or a pair
    ``(Resources, gpu_models)``), most frequent first. ``coverage`` < 1 keeps only the most
    popular types that together make up that share of the requests (renormalised), which makes
    scoring cheaper, as the paper's "typical pods" do."""
    if not 0 < coverage <= 1:
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    counts: Counter[tuple[Resources, tuple[str, ...]]] = Counter()
    for req in requests:
        if isinstance(req, Resources):
            counts[(req, ())] += 1
        else:
            r, models = req
            counts[(r, tuple(sorted(models)))] += 1
    total = sum(counts.values())
    if not total:
        raise ValueError("the target workload needs at least one request")
    kept: list[tuple[tuple[Resources, tuple[str, ...]], int]] = []
    covered = 0
    for key, n in sorted(counts.items(), key=lambda kv: (-kv[1], repr(kv[0]))):
        if covered >= coverage * total:
            break
        kept.append((key, n))
        covered += n
    return tuple(RequestType(r, n / covered, models) for (r, models), n in kept)


class RequestHistory:
    """The GPU requests seen lately, as FGD's target workload for an online scheduler: the
    request types of the last ``window`` GPU replicas submitted. The target is recomputed only
    after ``refresh`` new GPU replicas (and the first time), so between refreshes every cycle
    gets the very same tuple and the solver reuses the scorer built for it with its per-node
    cache. ``coverage`` keeps the most popular types (see ``target_workload``)."""

    def __init__(self, window: int = 2000, refresh: int = 200, coverage: float = 0.95) -> None:
        if window < 1 or refresh < 1:
            raise ValueError(f"window and refresh must be >= 1 (got {window}, {refresh})")
        self.coverage = coverage
        self.refresh = refresh
        self._seen: deque[tuple[Resources, tuple[str, ...]]] = deque(maxlen=window)
        self._since = 0
        self._target: tuple[RequestType, ...] = ()

    def add(self, spec: WorkloadSpec) -> None:
        """Record every replica of ``spec`` if it asks for GPUs."""
        if not spec.resources.wants_gpu:
            return
        n = min(spec.replica_count, self._seen.maxlen or 1)
        self._seen.extend([(spec.resources, tuple(spec.gpu_models))] * n)
        self._since += n

    def target(self) -> tuple[RequestType, ...]:
        """The current target workload; empty until a GPU request has been seen."""
        if self._seen and (not self._target or self._since >= self.refresh):
            self._target = target_workload(self._seen, coverage=self.coverage)
            self._since = 0
        return self._target


class FragmentationScorer:
    """FGD's node score for a target workload, usable as a ``greedy.NodeScorer``.

    In mode "fill+fgd" the fill term counts for the types that share a GPU only. For a
    whole-GPU type FGD's fragment already is every GPU it cannot take; the fill term added the
    nodes where its cores or memory run out before the GPUs, which drew whole-GPU work with
    many cores to the nodes richest in CPU and memory per GPU, the only ones 8-GPU pods of 120
    cores fit (openb multigpu30, random order: 6-8 of those pods failed per seed instead of
    0-1, and 226 GPUs were left unallocated against FGD's 220; now 218).

    ``FragmentationScorer(target_workload(requests))`` builds it from the request types and
    their frequencies (O(M) for M types). A call on K candidate nodes with up to G GPUs costs
    O(K * G * (U + M)) vectorised numpy work (U: distinct GPU shares among the types); node
    states already seen are cached, nodes without GPUs cost nothing. On the openb trace (151
    types, 1,523 nodes of up to 8 GPUs) a call takes 1-3 ms.
    """

    def __init__(self, target: Sequence[RequestType], mode: str = "fgd") -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r} (one of {', '.join(MODES)})")
        if not target:
            raise ValueError("the target workload needs at least one request type")
        self.mode = mode
        p = np.asarray([t.frequency for t in target], dtype=np.float64)
        if (p < 0).any() or p.sum() <= 0:
            raise ValueError("frequencies must be >= 0 and not all 0")
        self.target = tuple(target)
        p = p / p.sum()
        gpu = np.asarray([t.resources.wants_gpu for t in target], dtype=np.bool_)
        # CPU-only types see every free GPU milli as a fragment: one coefficient for them all
        self.cpu_only_weight = float(p[~gpu].sum())
        g = [t for t, w in zip(target, gpu, strict=True) if w]
        self.p = p[gpu]
        # per shape of GPU request (cores, memory, the share needed on each GPU it uses, how many
        # GPUs): types that differ only in the GPU models they accept share one shape, whose
        # fragment is computed once and weighed by those of its types that may use the node
        shape = [
            (
                t.resources.cpu_millis,
                t.resources.memory_mib,
                GPU_MILLIS if t.resources.gpus else t.resources.gpu_millis,
                t.resources.gpus or 1,
            )
            for t in g
        ]
        shapes = sorted(set(shape))
        number = {k: i for i, k in enumerate(shapes)}
        shape_of = np.asarray([number[k] for k in shape], dtype=np.int64)
        # types in shape order, and where each shape's run starts (for np.add.reduceat)
        self._by_shape = np.argsort(shape_of, kind="stable")
        self._shape_starts = np.flatnonzero(np.diff(shape_of[self._by_shape], prepend=-1))
        cols = np.asarray(shapes, dtype=np.int64).reshape(-1, 4)
        self.cpu, self.mem, self.share, self.count = cols.T
        self.shares, self.share_index = np.unique(self.share, return_inverse=True)
        self.whole = self.share >= GPU_MILLIS
        # per shape: whether the fill term counts for it (every shape in mode "fill")
        self._fills = ~self.whole if mode == "fill+fgd" else np.ones(len(self.share), np.bool_)
        self.models = [frozenset(t.gpu_models) for t in g]
        self._access_key: tuple[object, ...] | None = None
        self._access = np.zeros((0, 0), dtype=np.bool_)
        self._weights = self.p
        self._shape_weights = np.add.reduceat(self.p[self._by_shape], self._shape_starts)
        # F of node states seen before: per node, the state it had and its F
        self._cache_key: int | None = None
        self._seen_cpu = np.zeros(0, dtype=np.int64)
        self._seen_mem = np.zeros(0, dtype=np.int64)
        self._seen_gpu = np.zeros((0, 0), dtype=np.int64)
        self._seen_f = np.zeros(0)
        # per node, a number that changes whenever its state does; per request, the growth and
        # GPU choice computed for each node and the node's number at that time
        self._version = np.zeros(0, dtype=np.int64)
        self._growth: OrderedDict[Resources, tuple[IntArray, FloatArray, IntArray]] = OrderedDict()

    # ------------------------------------------------------------------ fragmentation

    def _pool_access(self, cluster: Cluster) -> BoolArray:
        """[pool, type]: whether GPU type m may run on the pool's GPU model (cached)."""
        key = (id(cluster.pools), len(cluster.pools))
        if self._access_key != key:
            acc = np.ones((len(cluster.pools), len(self.models)), dtype=np.bool_)
            for pi, pool in enumerate(cluster.pools):
                for m, allowed in enumerate(self.models):
                    acc[pi, m] = not allowed or pool.gpu_model in allowed
            self._access = acc
            self._access_key = key
            self._weights = self.type_weights(cluster, acc) if self.mode != "fgd" else self.p
            self._shape_weights = np.add.reduceat(self._weights[self._by_shape], self._shape_starts)
        return self._access

    def type_weights(self, cluster: Cluster, access: BoolArray | None = None) -> FloatArray:
        """The weight of each GPU type in the Valley modes: its frequency divided by the share
        of the cluster's GPUs whose model it accepts, rescaled to the same total. Types that
        accept any model keep their frequency relative to each other; a type that may use a
        tenth of the GPUs counts ten times as much for them, as its demand all lands there."""
        acc = self._pool_access(cluster) if access is None else access
        pool_gpus = np.zeros(len(cluster.pools))
        np.add.at(pool_gpus, cluster.node_pool, cluster.n_gpus)
        if not len(self.p) or pool_gpus.sum() <= 0:
            return self.p
        reach = (pool_gpus[:, None] * acc).sum(axis=0) / pool_gpus.sum()
        # a type no GPU here accepts cannot land anywhere: it keeps its frequency
        w = self.p / np.where(reach > 0, reach, 1.0)
        return np.asarray(w / w.sum() * self.p.sum(), dtype=np.float64)

    def fragmentation(
        self, free_cpu: IntArray, free_mem: IntArray, gpu_free: IntArray, access: BoolArray
    ) -> FloatArray:
        """F for S node states: ``gpu_free`` is S x G (-1 where a node has no such GPU),
        ``access`` S x M (GPU model allowed). In GPU millis."""
        g = np.maximum(gpu_free, 0).astype(np.float64)
        total = g.sum(axis=1)
        out = self.cpu_only_weight * total
        if not len(self.p) or not len(total):
            return out
        u = self.share_index
        # per state and shape: the weight of the shape's types whose GPU model the node has;
        # a type without it sees every free milli as a fragment, in each term
        w = access * self._weights[None, :]
        reach = np.add.reduceat(w[:, self._by_shape], self._shape_starts, axis=1)  # S x K
        frag = np.zeros((len(total), len(self.cpu)))
        terms = np.zeros(len(self.cpu))  # per shape: how many terms count for it
        if self.mode in ("fgd", "fill+fgd"):
            # per distinct share: GPUs with at least that much free, and the free millis below
            ge = g[:, :, None] >= self.shares[None, None, :]  # S x G x U
            count_ge = ge.sum(axis=1)
            below = (g[:, :, None] * ~ge).sum(axis=1)
            usable = (
                (free_cpu[:, None] >= self.cpu[None, :])
                & (free_mem[:, None] >= self.mem[None, :])
                & (count_ge[:, u] >= self.count[None, :])
            )
            frag += np.where(usable, below[:, u], total[:, None])
            terms += 1.0
        if self.mode in ("fill", "fill+fgd"):
            # tasks of a shape the node could still take: GPU slots, CPU and memory alike
            slots = np.floor(g[:, :, None] / self.shares[None, None, :]).sum(axis=1)  # S x U
            whole_free = (g >= GPU_MILLIS).sum(axis=1)
            gpu_tasks = np.where(
                self.whole[None, :], (whole_free[:, None] // self.count[None, :]), slots[:, u]
            )
            cpu_tasks = np.floor(free_cpu[:, None] / np.maximum(self.cpu, 1)[None, :])
            mem_tasks = np.floor(free_mem[:, None] / np.maximum(self.mem, 1)[None, :])
            tasks = np.minimum(np.minimum(gpu_tasks, cpu_tasks), mem_tasks)
            used = np.minimum(tasks * (self.share * self.count)[None, :], total[:, None])
            frag += np.where(self._fills[None, :], total[:, None] - used, 0.0)
            terms += self._fills
        # sum over types of weight x fragment, where a type without access has terms x total
        held = ((frag - terms[None, :] * total[:, None]) * reach).sum(axis=1)
        return np.asarray(out + held + total * (terms @ self._shape_weights), dtype=np.float64)

    def _states(
        self, cluster: Cluster, nodes: IntArray
    ) -> tuple[IntArray, IntArray, IntArray, BoolArray]:
        access = self._pool_access(cluster)[cluster.node_pool[nodes]]
        return cluster.free_cpu[nodes], cluster.free_mem[nodes], cluster.gpu_free[nodes], access

    def node_fragmentation(self, cluster: Cluster, nodes: IntArray | None = None) -> FloatArray:
        """F_n of the given nodes (all by default) as they are now, in GPU millis."""
        sel = np.arange(len(cluster)) if nodes is None else np.asarray(nodes, dtype=np.int64)
        out = np.zeros(len(sel))
        has_gpu = cluster.n_gpus[sel] > 0
        if not has_gpu.any():
            return out
        sel = sel[has_gpu]
        if self._cache_key != id(cluster.pools) or len(self._seen_f) != len(cluster):
            n, cols = cluster.gpu_free.shape
            self._cache_key = id(cluster.pools)
            self._seen_cpu = np.full(n, -1, dtype=np.int64)
            self._seen_mem = np.full(n, -1, dtype=np.int64)
            self._seen_gpu = np.full((n, cols), -2, dtype=np.int64)
            self._seen_f = np.zeros(n)
            self._version = np.zeros(n, dtype=np.int64)
            self._growth.clear()
        stale = (
            (self._seen_cpu[sel] != cluster.free_cpu[sel])
            | (self._seen_mem[sel] != cluster.free_mem[sel])
            | (self._seen_gpu[sel] != cluster.gpu_free[sel]).any(axis=1)
        )
        todo = sel[stale]
        if len(todo):
            self._seen_f[todo] = self.fragmentation(*self._states(cluster, todo))
            self._seen_cpu[todo] = cluster.free_cpu[todo]
            self._seen_mem[todo] = cluster.free_mem[todo]
            self._seen_gpu[todo] = cluster.gpu_free[todo]
            self._version[todo] += 1
        out[has_gpu] = self._seen_f[sel]
        return out

    def cluster_fragmentation(self, cluster: Cluster) -> float:
        """Sum of F_n over the cluster, in GPU millis."""
        return float(self.node_fragmentation(cluster).sum())

    # ------------------------------------------------------------------ scoring

    def best_placement(
        self, cluster: Cluster, nodes: IntArray, r: Resources
    ) -> tuple[FloatArray, IntArray]:
        """For each candidate node (each must fit ``r``): the growth of F_n when the replica
        goes there on its best GPU, and, for a share of one GPU, that GPU's index (-1 for
        whole GPUs or none; ``gpus_for`` turns it into the GPUs to allocate).

        Results are kept per request and node until the node changes, so a request seen
        before costs only the nodes that changed since."""
        nodes = np.asarray(nodes, dtype=np.int64)
        growth = np.zeros(len(nodes))
        share_gpu = np.full(len(nodes), -1, dtype=np.int64)
        gpu_nodes = np.flatnonzero(cluster.n_gpus[nodes] > 0)  # elsewhere F stays 0
        if not len(gpu_nodes):
            return growth, share_gpu
        sel = nodes[gpu_nodes]
        self.node_fragmentation(cluster, sel)  # brings the node versions up to date
        cached = self._growth.get(r)
        if cached is None:
            n = len(cluster)
            cached = (np.full(n, -1, dtype=np.int64), np.zeros(n), np.full(n, -1, dtype=np.int64))
            self._growth[r] = cached
            if len(self._growth) > CACHED_REQUESTS:
                self._growth.popitem(last=False)
        else:
            self._growth.move_to_end(r)
        at, g_cache, gpu_cache = cached
        todo = sel[at[sel] != self._version[sel]]
        if len(todo):
            g_new, gpu_new = self._best_placement(cluster, todo, r)
            g_cache[todo] = g_new
            gpu_cache[todo] = gpu_new
            at[todo] = self._version[todo]
        growth[gpu_nodes] = g_cache[sel]
        share_gpu[gpu_nodes] = gpu_cache[sel]
        return growth, share_gpu

    def _best_placement(
        self, cluster: Cluster, nodes: IntArray, r: Resources
    ) -> tuple[FloatArray, IntArray]:
        k = len(nodes)
        growth = np.zeros(k)
        share_gpu = np.full(k, -1, dtype=np.int64)
        gpu_nodes = np.flatnonzero(cluster.n_gpus[nodes] > 0)  # elsewhere F stays 0
        if not len(gpu_nodes):
            return growth, share_gpu
        sel = nodes[gpu_nodes]
        before = self.node_fragmentation(cluster, sel)
        cpu, mem, gfree, access = self._states(cluster, sel)
        cpu_after = cpu - r.cpu_millis
        mem_after = mem - r.memory_mib
        if r.gpus:
            # whole GPUs: which free ones does not matter, take the first
            after_g = gfree.copy()
            free_whole = after_g == GPU_MILLIS
            after_g[free_whole & (np.cumsum(free_whole, axis=1) <= r.gpus)] = 0
            growth[gpu_nodes] = self.fragmentation(cpu_after, mem_after, after_g, access) - before
            return growth, share_gpu
        if not r.gpu_millis:
            growth[gpu_nodes] = self.fragmentation(cpu_after, mem_after, gfree, access) - before
            return growth, share_gpu
        # a share of one GPU: every GPU with room is an option; GPUs of a node with the same
        # free share lead to the same state, so only the first of them is tried
        ncols = gfree.shape[1]
        earlier = np.tri(ncols, k=-1, dtype=np.bool_)  # [g, h]: h < g
        same_as_earlier = ((gfree[:, :, None] == gfree[:, None, :]) & earlier[None]).any(axis=2)
        rows, cols = np.nonzero((gfree >= r.gpu_millis) & ~same_as_earlier)
        after_g = gfree[rows].copy()
        after_g[np.arange(len(rows)), cols] -= r.gpu_millis
        option = self.fragmentation(cpu_after[rows], mem_after[rows], after_g, access[rows])
        option -= before[rows]
        best = np.full(len(sel), np.inf)
        np.minimum.at(best, rows, option)
        # the first option (lowest GPU index) reaching its node's minimum; options come in
        # row-major order, so np.unique finds it
        hit = np.flatnonzero(option <= best[rows] + 1e-9)
        _, first = np.unique(rows[hit], return_index=True)
        growth[gpu_nodes] = best
        share_gpu[gpu_nodes] = cols[hit[first]]
        return growth, share_gpu

    @staticmethod
    def gpus_for(cluster: Cluster, node: int, r: Resources, share_gpu: int) -> tuple[int, ...]:
        """The GPUs to allocate on ``node`` for ``r`` given ``best_placement``'s GPU choice."""
        if r.gpu_millis and share_gpu >= 0:
            return (int(share_gpu),)
        return cluster.choose_gpus(node, r)

    def __call__(self, cluster: Cluster, nodes: IntArray, r: Resources) -> FloatArray:
        return self.best_placement(cluster, nodes, r)[0]

    def choose_gpus(self, cluster: Cluster, node: int, r: Resources) -> tuple[int, ...]:
        """The GPUs of ``node`` that this score would give the replica (for
        ``Cluster.allocate``)."""
        share_gpu = self.best_placement(cluster, np.asarray([node]), r)[1][0]
        return self.gpus_for(cluster, node, r, int(share_gpu))
