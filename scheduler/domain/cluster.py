"""Node-level cluster state: free CPU and memory per node and free share per physical GPU.

Arrays are numpy so filters over thousands of nodes are vectorised; every change goes through
``allocate`` / ``release``, which never let a node or a GPU go over capacity.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

import numpy as np
import numpy.typing as npt

from scheduler.domain.resources import GPU_MILLIS, Resources
from scheduler.domain.scenario import Pool, Scenario

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


class CapacityError(ValueError):
    """An allocation that does not fit, or a release of something never allocated."""


class Cluster:
    """Every node of a scenario with its free capacity. Copy before speculative changes."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.pools: tuple[Pool, ...] = scenario.pools
        self.site_names: tuple[str, ...] = scenario.site_names
        site_index = {s: i for i, s in enumerate(self.site_names)}
        names: list[str] = []
        pool_of: list[int] = []
        for pi, pool in enumerate(self.pools):
            names.extend(pool.node_name(k) for k in range(pool.count))
            pool_of.extend([pi] * pool.count)
        self.node_names = names
        self.index = {n: i for i, n in enumerate(names)}
        # per node, its failure domain beyond itself: the rack (``site/rack``), or the node
        # alone where it stands in no rack (its own name then)
        self.node_racks = [
            f"{pool.site}/{rack}" if (rack := pool.rack_of(k)) else pool.node_name(k)
            for pool in self.pools
            for k in range(pool.count)
        ]
        rack_ids: dict[str, int] = {}
        self.node_rack = np.asarray(
            [rack_ids.setdefault(r, len(rack_ids)) for r in self.node_racks], dtype=np.int64
        )
        # per node, how many nodes of its rack come before it (to visit racks in turn)
        by_rack = np.argsort(self.node_rack, kind="stable")
        ranked = self.node_rack[by_rack]
        self.node_rack_pos = np.empty(len(names), dtype=np.int64)
        self.node_rack_pos[by_rack] = np.arange(len(names)) - np.searchsorted(ranked, ranked)
        self.node_pool = np.asarray(pool_of, dtype=np.int64)
        self.node_site = np.asarray(
            [site_index[self.pools[p].site] for p in pool_of], dtype=np.int64
        )
        self.cap_cpu = np.asarray([self.pools[p].node.cpu_millis for p in pool_of], dtype=np.int64)
        self.cap_mem = np.asarray([self.pools[p].node.memory_mib for p in pool_of], dtype=np.int64)
        self.n_gpus = np.asarray([self.pools[p].node.gpus for p in pool_of], dtype=np.int64)
        self.max_gpus = int(self.n_gpus.max()) if len(names) else 0
        self.free_cpu = self.cap_cpu.copy()
        self.free_mem = self.cap_mem.copy()
        # free millis per physical GPU; slots beyond a node's GPU count stay at -1 so that no
        # request (>= 1 milli) ever fits there
        cols = np.arange(max(self.max_gpus, 1))
        self.gpu_free = np.where(cols[None, :] < self.n_gpus[:, None], GPU_MILLIS, -1).astype(
            np.int64
        )
        self.replicas_on = np.zeros(len(names), dtype=np.int64)
        # (allocated?, node, resources, gpus) of every change since ``mark()``; None: not kept
        self._journal: list[tuple[bool, int, Resources, tuple[int, ...]]] | None = None

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self.node_names)

    def copy(self) -> Cluster:
        other = object.__new__(Cluster)
        other.__dict__.update(self.__dict__)
        for name in ("free_cpu", "free_mem", "gpu_free", "replicas_on"):
            setattr(other, name, getattr(self, name).copy())
        other._journal = None
        return other

    def without_room_on(self, names: Collection[str]) -> Cluster:
        """A copy in which the named nodes (those the cluster has) take nothing more: their
        free capacity is none. What they hold stays, and counts as drawn (a cordoned node's
        spare capacity is not the cluster's to use)."""
        nodes = [self.index[n] for n in names if n in self.index]
        other = self.copy()
        if nodes:
            other.free_cpu[nodes] = 0
            other.free_mem[nodes] = 0
            gpus = other.gpu_free[nodes]
            other.gpu_free[nodes] = np.minimum(gpus, 0)  # -1 marks a GPU the node does not have
        return other

    def pool_of(self, node: int) -> Pool:
        return self.pools[int(self.node_pool[node])]

    def site_of(self, node: int) -> str:
        return self.site_names[int(self.node_site[node])]

    def rack_of(self, node: int) -> str:
        """The node's rack within its site, "" if it stands in none."""
        pool = self.pool_of(node)
        return pool.rack_of(node - int(np.searchsorted(self.node_pool, self.node_pool[node])))

    @property
    def awake(self) -> BoolArray:
        """Nodes that hold any replica (an empty node is powered down)."""
        return self.replicas_on > 0

    def fit_mask(self, r: Resources, nodes: IntArray | None = None) -> BoolArray:
        """Which nodes (all, or those listed) can take one replica of ``r`` now."""
        sel = slice(None) if nodes is None else nodes
        mask = (self.free_cpu[sel] >= r.cpu_millis) & (self.free_mem[sel] >= r.memory_mib)
        if r.gpus:
            mask &= (self.gpu_free[sel] == GPU_MILLIS).sum(axis=1) >= r.gpus
        elif r.gpu_millis:
            mask &= (self.gpu_free[sel] >= r.gpu_millis).any(axis=1)
        return np.asarray(mask, dtype=np.bool_)

    def fits(self, node: int, r: Resources) -> bool:
        if self.free_cpu[node] < r.cpu_millis or self.free_mem[node] < r.memory_mib:
            return False
        g = self.gpu_free[node]
        if r.gpus:
            return int((g == GPU_MILLIS).sum()) >= r.gpus
        if r.gpu_millis:
            return bool((g >= r.gpu_millis).any())
        return True

    def allocated(self, node: int) -> Resources:
        """Allocation of a node in API terms: ``gpus`` counts GPUs holding any share,
        ``gpu_millis`` sums every share."""
        n = int(self.n_gpus[node])
        g = self.gpu_free[node, :n]
        return Resources(
            cpu_millis=int(self.cap_cpu[node] - self.free_cpu[node]),
            memory_mib=int(self.cap_mem[node] - self.free_mem[node]),
            gpus=int((g < GPU_MILLIS).sum()),
            gpu_millis=int((GPU_MILLIS - g).sum()),
        )

    def capacity(self, node: int) -> Resources:
        n = int(self.n_gpus[node])
        return Resources(int(self.cap_cpu[node]), int(self.cap_mem[node]), n, n * GPU_MILLIS)

    def gpu_used_millis(self) -> IntArray:
        """Allocated GPU millis per node."""
        g = np.where(self.gpu_free >= 0, GPU_MILLIS - self.gpu_free, 0)
        return np.asarray(g.sum(axis=1), dtype=np.int64)

    # ------------------------------------------------------------------ changes

    def choose_gpus(self, node: int, r: Resources) -> tuple[int, ...]:
        """The GPUs a replica would take: the first fully free ones for whole GPUs, the fullest
        GPU that still fits for a share (best fit keeps whole GPUs free)."""
        g = self.gpu_free[node]
        if r.gpus:
            free = np.flatnonzero(g == GPU_MILLIS)
            if len(free) < r.gpus:
                raise CapacityError(f"{self.node_names[node]}: {r.gpus} free GPUs needed")
            return tuple(int(i) for i in free[: r.gpus])
        if r.gpu_millis:
            ok = np.flatnonzero(g >= r.gpu_millis)
            if not len(ok):
                raise CapacityError(
                    f"{self.node_names[node]}: no GPU with {r.gpu_millis} millis free"
                )
            return (int(ok[np.argmin(g[ok])]),)
        return ()

    def allocate(
        self, node: int, r: Resources, gpu_indices: Iterable[int] | None = None
    ) -> tuple[int, ...]:
        """Take one replica's resources on ``node``; returns the physical GPUs used."""
        if self.free_cpu[node] < r.cpu_millis or self.free_mem[node] < r.memory_mib:
            raise CapacityError(f"{self.node_names[node]}: not enough cpu or memory free")
        gpus = (
            self.choose_gpus(node, r) if gpu_indices is None else tuple(int(i) for i in gpu_indices)
        )
        share = GPU_MILLIS if r.gpus else r.gpu_millis
        expected = r.gpus if r.gpus else (1 if r.gpu_millis else 0)
        if len(gpus) != expected or len(set(gpus)) != len(gpus):
            raise CapacityError(
                f"{self.node_names[node]}: expected {expected} distinct GPU indices"
            )
        for i in gpus:
            if not 0 <= i < self.n_gpus[node] or self.gpu_free[node, i] < share:
                raise CapacityError(f"{self.node_names[node]}: GPU {i} has not {share} millis free")
        self._take(node, r, gpus, 1)
        if self._journal is not None:
            self._journal.append((True, node, r, gpus))
        return gpus

    def allocate_many(self, node: int, r: Resources, count: int) -> None:
        """Take ``count`` replicas of a request without GPUs on ``node`` at once (packing places
        a shape several times per step); all or nothing."""
        if r.wants_gpu:
            raise ValueError("allocate_many takes requests without GPUs")
        if count <= 0:
            return
        if self.free_cpu[node] < count * r.cpu_millis or self.free_mem[node] < count * r.memory_mib:
            raise CapacityError(f"{self.node_names[node]}: not enough cpu or memory free")
        self._take(node, r, (), count)
        if self._journal is not None:
            self._journal.extend([(True, node, r, ())] * count)

    def release(self, node: int, r: Resources, gpu_indices: Iterable[int]) -> None:
        """Give back what ``allocate`` took."""
        gpus = tuple(gpu_indices)
        share = GPU_MILLIS if r.gpus else r.gpu_millis
        if (
            self.replicas_on[node] <= 0
            or self.free_cpu[node] + r.cpu_millis > self.cap_cpu[node]
            or self.free_mem[node] + r.memory_mib > self.cap_mem[node]
            or any(self.gpu_free[node, i] + share > GPU_MILLIS for i in gpus)
        ):
            raise CapacityError(f"{self.node_names[node]}: release of resources never allocated")
        self._take(node, r, gpus, -1)
        if self._journal is not None:
            self._journal.append((False, node, r, gpus))

    def _take(self, node: int, r: Resources, gpus: tuple[int, ...], times: int) -> None:
        """Take ``times`` replicas' resources on ``node`` (negative: give them back),
        unchecked: the callers check."""
        share = GPU_MILLIS if r.gpus else r.gpu_millis
        self.free_cpu[node] -= times * r.cpu_millis
        self.free_mem[node] -= times * r.memory_mib
        for i in gpus:
            self.gpu_free[node, i] -= times * share
        self.replicas_on[node] += times

    # ------------------------------------------------------------------ undo

    def mark(self) -> int:
        """Keep every change from now on so that ``undo_to`` can take it back; returns the
        mark to undo to. Marks nest; ``forget`` at the outermost mark stops keeping."""
        if self._journal is None:
            self._journal = []
        return len(self._journal)

    def undo_to(self, mark: int) -> None:
        """Take back every ``allocate`` and ``release`` since ``mark``, newest first."""
        journal = self._journal
        if journal is None or mark > len(journal):
            raise ValueError(f"no changes kept since mark {mark}")
        while len(journal) > mark:
            allocated, node, r, gpus = journal.pop()
            # give back what was taken, take what was given
            self._take(node, r, gpus, -1 if allocated else 1)

    def forget(self, mark: int) -> None:
        """Keep the changes since ``mark``; at mark 0 stop keeping changes at all."""
        if mark == 0:
            self._journal = None
