"""Pack the GPU nodes woken this cycle again, as a vector bin packing, when that needs fewer.

GPU nodes are few and expensive to keep powered (1.5 kW idle), and packing by hand strands
GPUs. An item is (cores, memory, GPUs) for a whole-GPU replica or for one physical GPU's group
of fractional shares (``Items``), so any packing of the items is a valid placement.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from scheduler.domain import GPU_MILLIS, Cluster
from scheduler.solver.binpack import min_bins
from scheduler.solver.budget import TimeBudget
from scheduler.solver.valley.state import PackingState, ReplicaRef

# at most this many items per group of pools; per bin packing, this much deterministic work
# (``binpack.work`` units, about seconds of one core: the same packing on any machine), and
# the wall clock as a safety cap (also the budget's grace)
MAX_ITEMS = 1500
WORK = 0.1
WALL_CAP_S = 0.3


@dataclass
class Items:
    """Vector bin packing items built from replicas: a whole-GPU replica alone, or fractional
    shares grouped into one physical GPU (first fit decreasing by share), as long as the
    group's cores and memory fit one node."""

    capacity: tuple[int, int, int]  # a node's cores, memory, GPUs
    vectors: list[tuple[int, int, int]] = field(default_factory=list)
    groups: list[list[ReplicaRef]] = field(default_factory=list)
    is_unit: list[bool] = field(default_factory=list)

    @classmethod
    def of(
        cls, reps: Sequence[ReplicaRef], state: PackingState, capacity: tuple[int, int, int]
    ) -> Items:
        out = cls(capacity)
        frac = []
        for wid, i in reps:
            r = state.specs[wid].resources
            if r.gpu_millis:
                frac.append((wid, i))
            else:
                out._add([(wid, i)], (r.cpu_millis, r.memory_mib, r.gpus), False)
        frac.sort(key=lambda it: (-state.specs[it[0]].resources.gpu_millis, it))
        units: list[list[int]] = []  # per GPU: [millis, item]
        cpu_cap, mem_cap, _ = capacity
        for wid, i in frac:
            r = state.specs[wid].resources
            limit = state.elig[wid].per_node
            for u in units:
                cpu, mem, g = out.vectors[u[1]]
                # the shares of one GPU share one node: their cores and memory must fit it,
                # and it holds at most the workload's per-node limit of them
                if (
                    sum(w == wid for w, _ in out.groups[u[1]]) < limit
                    and u[0] + r.gpu_millis <= GPU_MILLIS
                    and cpu + r.cpu_millis <= cpu_cap
                    and mem + r.memory_mib <= mem_cap
                ):
                    u[0] += r.gpu_millis
                    out.vectors[u[1]] = (cpu + r.cpu_millis, mem + r.memory_mib, g)
                    out.groups[u[1]].append((wid, i))
                    break
            else:
                units.append([r.gpu_millis, len(out.vectors)])
                out._add([(wid, i)], (r.cpu_millis, r.memory_mib, 1), True)
        return out

    def _add(self, group: list[ReplicaRef], vector: tuple[int, int, int], unit: bool) -> None:
        self.groups.append(group)
        self.vectors.append(vector)
        self.is_unit.append(unit)

    def array(self, idx: Sequence[int] | None = None) -> np.ndarray:
        rows = self.vectors if idx is None else [self.vectors[k] for k in idx]
        return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


# a bin: the pool it must be in (-1: any pool of the group) and the items it holds
Bin = tuple[int, list[tuple[Items, int]]]


def interchangeable_gpu_pools(cluster: Cluster) -> list[list[int]]:
    """GPU pools grouped per site by identical node shape and power model (they differ at
    most in GPU model): a replica allowed on several of them costs the same on each."""
    groups: dict[tuple[object, ...], list[int]] = defaultdict(list)
    for pi, pool in enumerate(cluster.pools):
        if pool.node.gpus:
            key = (pool.site, pool.node, pool.idle_watts, pool.max_watts, pool.gpu_watts)
            groups[key].append(pi)
    return list(groups.values())


def _least_nodes(
    state: PackingState, reps: Sequence[ReplicaRef], capacity: tuple[int, int, int]
) -> int:
    """A lower bound on the nodes any packing of ``reps`` needs: per resource, the total over
    one node's capacity, rounded up (shares count as parts of a GPU)."""
    cpu = mem = gpu_millis = 0
    for wid, _ in reps:
        r = state.specs[wid].resources
        cpu += r.cpu_millis
        mem += r.memory_mib
        gpu_millis += r.gpus * GPU_MILLIS + r.gpu_millis
    return max(
        -(-cpu // capacity[0]), -(-mem // capacity[1]), -(-gpu_millis // (capacity[2] * GPU_MILLIS))
    )


class GpuRepack:
    """Pools of a site that differ only in GPU model are packed together: the replicas only
    one of them may take first, each pool on its own, then the replicas any of them may take,
    into the room left and then into as few more nodes as possible. Kept only if fewer nodes;
    replicas stay in their site, on pools they are allowed, at the same cost but idle power."""

    name: ClassVar[str] = "gpu-repack"

    def supports(self, state: PackingState) -> bool:
        return any(state.specs[w].resources.wants_gpu for w in state.placed())

    def apply(self, state: PackingState, budget: TimeBudget) -> bool:
        changed = False
        for group in interchangeable_gpu_pools(state.cluster):
            if budget.left(grace=True) <= 0.005:
                break
            changed |= self._group(state, group, budget)
        return changed

    def _group(self, state: PackingState, group: list[int], budget: TimeBudget) -> bool:
        cluster, index = state.cluster, state.index
        node = cluster.pools[group[0]].node
        capacity = (node.cpu_millis, node.memory_mib, node.gpus)
        woken = {}
        for p in group:
            nodes = state.woken(index.by_pool[p])
            woken[p] = nodes[_whole_before(state, nodes)]
        n_woken = sum(len(w) for w in woken.values())
        if n_woken < 2:
            return False
        reps_of = {p: [it for n in woken[p].tolist() for it in state.on_node(n)] for p in group}
        if sum(len(r) for r in reps_of.values()) > MAX_ITEMS:
            return False
        if _least_nodes(state, [it for r in reps_of.values() for it in r], capacity) >= n_woken:
            return False  # no packing can need fewer nodes: spare the search its time
        # per pool, the replicas only it may take; the others may go to any pool of the group
        pinned: dict[int, list[ReplicaRef]] = {p: [] for p in group}
        free: list[ReplicaRef] = []
        for p in group:
            for wid, i in reps_of[p]:
                anywhere = len(group) > 1 and set(group) <= set(state.elig[wid].pools)
                (free if anywhere else pinned[p]).append((wid, i))
        bins = self._pack(state, group, pinned, free, capacity, budget)
        if bins is None or len(bins) >= n_woken or not _keep_limits(state, bins, capacity, free):
            return False
        node_of = self._nodes_for(state, group, woken, bins)
        if node_of is None:
            return False
        for p in group:
            for wid, i in reps_of[p]:
                state.lift(wid, i)
        for n, (_, held) in zip(node_of, bins, strict=True):
            next_gpu = 0
            for items, k in held:
                if items.is_unit[k]:
                    for wid, i in items.groups[k]:
                        state.put(wid, i, n, (next_gpu,))
                    next_gpu += 1
                else:
                    ((wid, i),) = items.groups[k]
                    gpus = state.specs[wid].resources.gpus
                    state.put(wid, i, n, tuple(range(next_gpu, next_gpu + gpus)))
                    next_gpu += gpus
        return True

    @staticmethod
    def _pack(
        state: PackingState,
        group: list[int],
        pinned: dict[int, list[ReplicaRef]],
        free: list[ReplicaRef],
        capacity: tuple[int, int, int],
        budget: TimeBudget,
    ) -> list[Bin] | None:
        """The bins, pinned replicas' first; None if out of time."""
        cap = np.asarray(capacity, dtype=np.int64)
        bins: list[Bin] = []
        for p in group:
            items = Items.of(pinned[p], state, capacity)
            if not items.vectors:
                continue
            limit = min(WALL_CAP_S, budget.left(grace=True))
            if limit <= 0.005:
                return None
            res = min_bins(items.array(), cap, time_limit_s=limit, work_limit=WORK)
            start = len(bins)
            bins.extend((p, []) for _ in range(res.bins))
            for k, b in enumerate(res.assignment.tolist()):
                bins[start + b][1].append((items, k))
        if not free:
            return bins
        items = Items.of(free, state, capacity)
        used = [
            np.asarray([it.vectors[k] for it, k in held], dtype=np.int64).sum(axis=0)
            for _, held in bins
        ]
        # first fit decreasing into the room the pinned replicas left
        order = sorted(
            range(len(items.vectors)),
            key=lambda k: -sum(v / c for v, c in zip(items.vectors[k], capacity, strict=True)),
        )
        rest: list[int] = []
        for k in order:
            v = np.asarray(items.vectors[k], dtype=np.int64)
            for b, u in enumerate(used):
                if (u + v <= cap).all():
                    used[b] = u + v
                    bins[b][1].append((items, k))
                    break
            else:
                rest.append(k)
        if rest:
            limit = min(WALL_CAP_S, budget.left(grace=True))
            if limit <= 0.005:
                return None
            res = min_bins(items.array(rest), cap, time_limit_s=limit, work_limit=WORK)
            start = len(bins)
            bins.extend((-1, []) for _ in range(res.bins))
            for k, b in zip(rest, res.assignment.tolist(), strict=True):
                bins[start + b][1].append((items, k))
        return bins

    @staticmethod
    def _nodes_for(
        state: PackingState, group: list[int], woken: dict[int, np.ndarray], bins: list[Bin]
    ) -> list[int] | None:
        """A node per bin: per pool, its woken nodes first, then nodes empty and wholly free
        before this cycle; None if a pool has too few."""
        spare = {}
        for p in group:
            nodes = state.index.by_pool[p]
            empty = nodes[(state.cluster.replicas_on[nodes] == 0) & ~state.awake_before[nodes]]
            spare[p] = [*sorted(woken[p].tolist()), *empty[_whole_before(state, empty)].tolist()]
        node_of: list[int] = []
        for p, _ in bins:
            if p < 0:  # the first pool of the group with a node to spare
                p = next((q for q in group if spare[q]), group[0])
            if not spare[p]:
                return None
            node_of.append(spare[p].pop(0))
        return node_of


def _whole_before(state: PackingState, nodes: np.ndarray) -> np.ndarray:
    """Which of ``nodes`` had all their cores, memory and GPUs free before this cycle: the
    repack fills a node from its first GPU on, to its whole capacity. Not so a node holding
    capacity a reservation takes later (time shifting leaves it out of the cycle's cluster,
    asleep or not) or a cordoned one (none of its capacity is free)."""
    before = state.problem.cluster
    gpus = before.gpu_free[nodes]
    return (
        (before.free_cpu[nodes] == before.cap_cpu[nodes])
        & (before.free_mem[nodes] == before.cap_mem[nodes])
        & np.all((gpus == GPU_MILLIS) | (gpus < 0), axis=1)
    )


def _keep_limits(
    state: PackingState, bins: list[Bin], capacity: tuple[int, int, int], free: list[ReplicaRef]
) -> bool:
    """Move or swap items between ``bins`` (in place) until no bin holds more of a workload's
    replicas than its per-node limit (the bin packing knows nothing of the limits; the nodes
    are emptied first, so only the bins' replicas count). False if that fails."""
    return _Limits(state, bins, capacity, set(free)).fix()


class _Limits:
    """The bins' usage and per-workload counts, and the moves and swaps that keep both."""

    def __init__(
        self,
        state: PackingState,
        bins: list[Bin],
        capacity: tuple[int, int, int],
        anywhere: set[ReplicaRef],
    ) -> None:
        self.state, self.bins, self.cap, self.anywhere = state, bins, capacity, anywhere
        self.used = [
            [sum(items.vectors[k][d] for items, k in held) for d in range(3)] for _, held in bins
        ]
        self.count = [
            Counter(wid for items, k in held for wid, _ in items.groups[k]) for _, held in bins
        ]

    def _over(self, c: Counter[str]) -> bool:
        return any(n > self.state.elig[wid].per_node for wid, n in c.items())

    def _may_go(self, item: tuple[Items, int], b: int, to: int) -> bool:
        """Pools allow ``item`` in bin ``to`` (it sits in ``b``)."""
        items, k = item
        same = self.bins[b][0] == self.bins[to][0]
        return same or all(ref in self.anywhere for ref in items.groups[k])

    def _room(self, to: int, add: tuple[Items, int], drop: tuple[Items, int] | None) -> bool:
        """Bin ``to`` takes ``add`` (giving up ``drop``) within capacity and the limits of
        ``add``'s workloads (a bin over another workload's limit is fixed in its turn)."""
        v = add[0].vectors[add[1]]
        w = drop[0].vectors[drop[1]] if drop else (0, 0, 0)
        if any(self.used[to][d] + v[d] - w[d] > self.cap[d] for d in range(3)):
            return False
        mine = _wids(add)
        c = self.count[to] + mine
        if drop:
            c -= _wids(drop)
        return not self._over(Counter({wid: c[wid] for wid in mine}))

    def _relocate(self, item: tuple[Items, int], b: int, to: int) -> None:
        held = self.bins[b][1]
        del held[next(j for j, (it, k) in enumerate(held) if it is item[0] and k == item[1])]
        self.bins[to][1].append(item)
        v = item[0].vectors[item[1]]
        for d in range(3):
            self.used[b][d] -= v[d]
            self.used[to][d] += v[d]
        self.count[b] -= _wids(item)
        self.count[to] += _wids(item)

    def _resolve(self, x: tuple[Items, int], b: int) -> bool:
        """Move ``x`` out of bin ``b``, or swap it with an item of another bin."""
        for to in range(len(self.bins)):
            if to != b and self._may_go(x, b, to) and self._room(to, x, None):
                self._relocate(x, b, to)
                return True
        for to in range(len(self.bins)):
            if to == b or not self._may_go(x, b, to):
                continue
            for y in self.bins[to][1]:
                if self._may_go(y, to, b) and self._room(to, x, y) and self._room(b, y, x):
                    self._relocate(x, b, to)
                    self._relocate(y, to, b)
                    return True
        return False

    def fix(self) -> bool:
        limit = {wid: e.per_node for wid, e in self.state.elig.items()}
        for b in range(len(self.bins)):
            for x in list(self.bins[b][1]):
                if not self._over(self.count[b]):
                    break
                over = any(self.count[b][wid] > limit[wid] for wid in _wids(x))
                if over and not self._resolve(x, b):
                    return False
            if self._over(self.count[b]):
                return False
        return True


def _wids(item: tuple[Items, int]) -> Counter[str]:
    return Counter(wid for wid, _ in item[0].groups[item[1]])
