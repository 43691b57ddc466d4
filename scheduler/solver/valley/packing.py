"""Packing the model's counts onto concrete nodes.

Counts go onto nodes pool by pool, GPU pools first, mixing shapes on each node, powered nodes
first; replicas that do not fit move to another eligible pool (the same site for GANG); a
workload that still does not fit whole is left out, for the repairs to try again.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict, deque
from collections.abc import Sequence
from operator import itemgetter

import numpy as np

from scheduler.domain import GPU_MILLIS, Cluster, Resources, Topology, WorkloadSpec
from scheduler.solver.filters import capacity_counts
from scheduler.solver.valley.exact_fill import best_fill
from scheduler.solver.valley.model import Model
from scheduler.solver.valley.pool_kernel import pack_cpu_pool as kernel_pack_cpu_pool
from scheduler.solver.valley.state import PackingState, Slot

# in a pool of CPU nodes with nodes to spare, a node is filled greedily down to this many
# millicores free, then exactly (``exact_fill``): as tight as filling it exactly from the first
# core on the 10k mixes, in less time (fewer shapes are left to choose from)
EXACT_TAIL_MILLIS = 8000


def pack(state: PackingState, model: Model, counts: Sequence[int]) -> None:
    """Place the model's ``counts`` onto the nodes of ``state`` (which holds nothing yet)."""
    plan = _plan(model, counts)
    demand: dict[int, dict[str, int]] = defaultdict(dict)  # pool -> wid -> replicas
    for wid, pools in plan.items():
        for p, k in pools.items():
            demand[p][wid] = k
    spare = {ps.index: ps.empty_nodes - counts[ps.wake] for ps in model.pools if ps.wake >= 0}
    got: dict[str, list[Slot]] = defaultdict(list)
    short: dict[str, int] = defaultdict(int)
    cluster = state.cluster
    todo = {wid: len(pools) for wid, pools in plan.items()}  # pools still to pack
    done: set[str] = set()
    # a powered-down node of a pool the model did not wake costs its idle power: replicas
    # that overflow their pool wake the cheapest pool's nodes first, and in a full pool the
    # replicas whose other pools cost most to wake are packed first
    wake_cost = {ps.index: model.lm.cost[ps.wake] for ps in model.pools if ps.wake >= 0}
    for p in sorted(demand, key=lambda p: (cluster.pools[p].node.gpus == 0, p)):
        # a pool with nodes to spare packs all its replicas together (tighter); a full one
        # of GPU nodes packs group by group, so that a shortfall hits what costs least. A pool
        # of CPU nodes fills each node's CPU exactly (``exact_fill``), all its replicas
        # together; with few nodes to spare from the first core: the model may ask for all
        # but a few of its cores (E-Town's at 99.96% on some 10k mixes), where a greedy fill
        # strands a core a node and the last group's replicas find no room
        nodes = len(state.index.by_pool[p])
        full = spare.get(p, 0) <= max(2, nodes // 20)
        exact = 0  # where packing switches to filling a node's CPU exactly (0: never)
        if not cluster.pools[p].node.gpus:
            tight = spare.get(p, 0) <= max(2, nodes // 10)
            exact = cluster.pools[p].node.cpu_millis if tight else EXACT_TAIL_MILLIS
        groups: dict[tuple[float, int], list[str]] = defaultdict(list)
        for wid in demand[p]:
            key = _group(state, wid, p, wake_cost) if full and not exact else (0.0, 0)
            groups[key].append(wid)
        for key in sorted(groups):
            _pack_group(state, p, groups[key], demand[p], got, short, not full, exact)
            for wid in groups[key]:
                todo[wid] -= 1
                # in a full pool, what a group left short is completed before the next
                # group takes the holes it could use (once its other pools are packed too)
                if full and short.get(wid) and not todo[wid]:
                    _complete(state, wid, got[wid], short[wid], wake_cost)
                    done.add(wid)
    for wid in plan:
        if wid not in done:
            _complete(state, wid, got[wid], short.get(wid, 0), wake_cost)


def _plan(model: Model, counts: Sequence[int]) -> dict[str, dict[int, int]]:
    """Per workload the model places, how many of its replicas go to each pool: the class's
    replicas per pool, in the model's order of pools, n by n to its workloads in turn."""
    plan: dict[str, dict[int, int]] = {}
    for c in model.classes:
        chosen = c.members[: counts[c.k]]
        n = c.spec.replica_count
        if c.spec.topology == Topology.GANG:
            # distribute per site: replicas of the site's pools, n per workload
            it = iter(chosen)
            for site, gv in c.g.items():
                runs = [(p, counts[c.x[p]]) for p in c.elig.pools_by_site[site]]
                _share_out(runs, [next(it) for _ in range(counts[gv])], n, plan)
        else:
            _share_out([(p, counts[v]) for p, v in c.x.items()], chosen, n, plan)
    return plan


def _share_out(
    runs: list[tuple[int, int]], wids: Sequence[str], n: int, plan: dict[str, dict[int, int]]
) -> None:
    """Replicas ``runs`` of (pool, count) long, in that order, ``n`` to each of ``wids`` in
    turn (the last ones fewer or none where the runs fall short)."""
    pos, left = 0, runs[0][1] if runs else 0
    for wid in wids:
        mine: dict[int, int] = {}
        need = n
        while need and pos < len(runs):
            if not left:
                pos += 1
                left = runs[pos][1] if pos < len(runs) else 0
                continue
            take = min(need, left)
            pool = runs[pos][0]
            mine[pool] = mine.get(pool, 0) + take
            need -= take
            left -= take
        plan[wid] = mine


def _group(
    state: PackingState, wid: str, pool: int, wake_cost: dict[int, float]
) -> tuple[float, int]:
    """Packing order in a full pool: replicas with no other pool to go to first, then those
    whose other pools cost most to wake (an A800-only pod before one that may use an H800
    node too), higher priority first. GANG and SPREAD replicas count as having nowhere else."""
    spec = state.specs[wid]
    others = [q for q in state.elig[wid].pools if q != pool]
    if not others or spec.topology in (Topology.GANG, Topology.SPREAD):
        return (-math.inf, -spec.priority)
    return (-round(min(wake_cost.get(q, math.inf) for q in others), 6), -spec.priority)


def _pack_group(
    state: PackingState,
    pool: int,
    wids: list[str],
    demand: dict[str, int],
    got: dict[str, list[Slot]],
    short: dict[str, int],
    spread: bool,
    exact: int = 0,
) -> None:
    by_shape: dict[Resources, list[tuple[str, int]]] = defaultdict(list)
    # within a shape, larger workloads first: a shortfall drops the fewest replicas
    for wid in sorted(wids, key=lambda w: -state.specs[w].replica_count):
        by_shape[state.specs[wid].resources].append((wid, demand[wid]))
    shapes = list(by_shape)
    takers = [_Takers(state, by_shape[r], spread) for r in shapes]
    nodes = state.index.by_pool[pool]
    if exact and not state.cluster.pools[pool].node.gpus and not any(r.wants_gpu for r in shapes):
        pack_cpu_pool(state.cluster, nodes, shapes, takers, exact)
    else:
        pack_pool(state.cluster, nodes, shapes, takers, exact)
    for t in takers:
        for wid, mine, left in t.handed():
            got[wid].extend(mine)
            short[wid] += left


class _Takers:
    """The workloads that want one shape's replicas in a pool (in the order they get them),
    and the slots handed to each: node by node, each takes at most its ``per_node`` limit of a
    node's slots. ``room`` is how many slots the next node may take so that every one of them
    has a taker within the limits (so packing leaves no slot that no workload may use). With
    ``spread`` (a pool with nodes to spare), a service takes one slot a node while others
    want them, then waits its turn: its replicas land on nodes far apart in packing's order,
    which visits the racks in turn (in a full pool, workloads are served whole in order, so
    that a shortfall hits the fewest)."""

    def __init__(self, state: PackingState, wanted: list[tuple[str, int]], spread: bool) -> None:
        self.wids = [wid for wid, _ in wanted]
        self.rem = [m for _, m in wanted]
        self.limit = [min(state.elig[wid].per_node, m) for wid, m in wanted]
        self.spread = [spread and m > 1 and state.specs[wid].is_service for wid, m in wanted]
        self.mine: list[list[Slot]] = [[] for _ in wanted]
        self.left = sum(self.rem)
        self.room = sum(self.limit)  # sum of min(limit, rem) over the workloads
        self.limited = any(lim < m for lim, m in zip(self.limit, self.rem, strict=True))
        self._queue: deque[int] = deque(j for j, m in enumerate(self.rem) if m)
        self.need = self._need()

    def _need(self) -> int:
        """The most nodes one of the workloads still needs within its limit."""
        if not self.limited:
            return 0
        return max((-(-self.rem[j] // self.limit[j]) for j in self._queue), default=0)

    def _give(self, j: int, slots: list[Slot]) -> None:
        before = min(self.limit[j], self.rem[j])
        self.mine[j] += slots
        self.rem[j] -= len(slots)
        self.room -= before - min(self.limit[j], self.rem[j])
        self.left -= len(slots)

    def hand_out(self, slots: list[Slot]) -> None:
        """Give the slots of one node (at most ``room``) to the workloads, in order, each at
        most its limit (a spreading service one, then more only if slots are left)."""
        pos = 0
        keep: list[int] = []
        spread: list[int] = []
        while pos < len(slots) and self._queue:
            j = self._queue.popleft()
            give = min(1 if self.spread[j] else self.limit[j], self.rem[j], len(slots) - pos)
            self._give(j, slots[pos : pos + give])
            pos += give
            (spread if self.spread[j] else keep).append(j)
        for j in spread:  # slots left: the services served take more, within the limit
            give = min(self.limit[j] - 1, self.rem[j], len(slots) - pos)
            if give > 0:
                self._give(j, slots[pos : pos + give])
                pos += give
        # those that kept their turn first, the services served last
        self._queue.extendleft(reversed([j for j in keep if self.rem[j]]))
        self._queue.extend(j for j in spread if self.rem[j])
        self.need = self._need()

    def handed(self) -> list[tuple[str, list[Slot], int]]:
        """Per workload: its slots and how many of its replicas found none."""
        return list(zip(self.wids, self.mine, self.rem, strict=True))


def _complete(
    state: PackingState,
    wid: str,
    got: list[Slot],
    missing: int,
    wake_cost: dict[int, float],
) -> None:
    """Replicas that did not fit go to another eligible pool (the same site for GANG):
    powered nodes of any of them first, then the pool whose nodes cost least to wake. The
    workload is placed if whole and its topology holds, else its replicas are released."""
    cluster = state.cluster
    spec = state.specs[wid]
    if missing:
        e = state.elig[wid]
        if spec.topology == Topology.GANG:
            site = cluster.site_of(got[0][0]) if got else e.sites[0]
            alt = e.pools_by_site[site]
        else:
            alt = e.pools
        nodes = state.index.nodes(tuple(alt))
        limit = state.elig[wid].per_node
        for part in (
            nodes[cluster.replicas_on[nodes] > 0],
            *(state.index.by_pool[p] for p in sorted(alt, key=lambda p: wake_cost.get(p, 0.0))),
        ):
            more = fill(cluster, part, spec.resources, missing, limit, got)
            got.extend(more)
            missing -= len(more)
            if not missing:
                break
    if missing or not topology_holds(spec, cluster, got) or not per_node_holds(state, wid, got):
        for node, gpus in got:
            cluster.release(node, spec.resources, gpus)
        return
    state.place(wid, got)


def topology_holds(spec: WorkloadSpec, cluster: Cluster, got: Sequence[Slot]) -> bool:
    if spec.topology not in (Topology.GANG, Topology.SPREAD):
        return True
    site = cluster.node_site
    sites = {int(site[node]) for node, _ in got}
    if spec.topology == Topology.GANG:
        return len(sites) <= 1
    return len(sites) >= spec.min_sites


def per_node_holds(state: PackingState, wid: str, got: Sequence[Slot]) -> bool:
    """No node holds more than the workload's ``per_node`` of ``got``."""
    limit = state.elig[wid].per_node
    if limit >= len(got):
        return True
    return max(Counter(map(itemgetter(0), got)).values()) <= limit


def awake_first(cluster: Cluster, nodes: np.ndarray) -> np.ndarray:
    """The order (positions in ``nodes``) packing visits nodes in: powered first, fullest
    first, then the racks in turn (the first node of each rack, then the second, ...), so
    that a workload's replicas on successive nodes stand in different racks."""
    awake = cluster.replicas_on[nodes] > 0
    fullness = 1.0 - cluster.free_cpu[nodes] / cluster.cap_cpu[nodes]
    rack = cluster.node_rack[nodes]
    return np.lexsort((nodes, rack, cluster.node_rack_pos[nodes], -fullness, ~awake))


def fill(
    cluster: Cluster,
    nodes: np.ndarray,
    r: Resources,
    want: int,
    per_node: int | None = None,
    held: Sequence[Slot] = (),
) -> list[Slot]:
    """Place up to ``want`` replicas of ``r`` on ``nodes``: powered nodes first, fullest first
    (best fit), then as few powered-down nodes as possible; at most ``per_node`` a node when
    given, counting the workload's replicas ``held`` there already."""
    if want <= 0 or not len(nodes):
        return []
    cnt = capacity_counts(cluster, nodes, r)
    ok = cnt > 0
    nodes, cnt = nodes[ok], cnt[ok]
    if not len(nodes):
        return []
    order = awake_first(cluster, nodes)
    out: list[Slot] = []
    there = Counter(node for node, _ in held)
    for node, c in zip(nodes[order].tolist(), cnt[order].tolist(), strict=True):
        if per_node is not None:
            c = min(c, per_node - there[node])
        for _ in range(min(c, want - len(out))):
            if not cluster.fits(node, r):
                break
            out.append((node, cluster.allocate(node, r)))
        if len(out) >= want:
            break
    return out


def pack_pool(
    cluster: Cluster,
    nodes: np.ndarray,
    shapes: Sequence[Resources],
    takers: Sequence[_Takers],
    exact_below: int = 0,
) -> None:
    """Pack replicas of several shapes onto the nodes of one pool, node by node: powered nodes
    first (fullest first), then powered-down ones. On each node, the next replica is the shape
    that best fills the node's free vector, each resource weighted by how much demand is still
    to place in it, so CPU-heavy and memory-heavy replicas share nodes instead of stranding
    capacity (on a 10k-replica mix this packs within 2% of the per-resource lower bound).
    A node takes no more of a shape than its ``takers`` may hold there (per-node limits);
    each node's slots are handed to them when packing moves on. With ``exact_below`` (a pool
    of CPU nodes), a node with that many millicores free or fewer instead takes the shapes
    that fill its CPU as far as any choice of them can (``_ExactFill``)."""
    counts = [t.left for t in takers]
    if not len(nodes) or not sum(counts):
        return
    packer = _PoolPacker(cluster, cluster.pool_of(int(nodes[0])).node, shapes, counts)
    limited = [t for t, tk in enumerate(takers) if tk.limited]
    packer.room[limited] = [takers[t].room for t in limited]
    # per shape, the nodes its most spread-out workload still needs: a shape that needs as
    # many nodes as are left to visit goes first (in a full pool it would find too few later)
    need = np.zeros(len(shapes), dtype=np.int64)
    need[limited] = [takers[t].need for t in limited]
    order = nodes[awake_first(cluster, nodes)].tolist()
    exact = _ExactFill(packer) if exact_below and not packer.gpu_shape.any() else None
    for j, node in enumerate(order):
        here: dict[int, list[Slot]] = {}
        urgent = (need >= len(order) - j) & (packer.left > 0)
        if exact is None:
            _fill_greedily(cluster, node, shapes, packer, here, urgent if urgent.any() else None)
        else:
            if urgent.any():  # the urgent shapes first, as far as they fit
                _fill_greedily(cluster, node, shapes, packer, here, urgent, only_first=True)
            _fill_greedily(cluster, node, shapes, packer, here, None, stop_at=exact_below)
            exact.fill(node, shapes, here)
            # what still fits (a shape without CPU; a fill the table's heuristic missed)
            _fill_greedily(cluster, node, shapes, packer, here, None)
        for t, mine in here.items():
            takers[t].hand_out(mine)
            if takers[t].limited:
                packer.room[t] = takers[t].room
                need[t] = takers[t].need
        if not packer.left.sum():
            break


def pack_cpu_pool(
    cluster: Cluster,
    nodes: np.ndarray,
    shapes: Sequence[Resources],
    takers: Sequence[_Takers],
    exact_below: int,
) -> None:
    """``pack_pool`` for a pool of CPU nodes with an exact fill (``exact_below`` > 0), compiled
    (``pool_kernel``): the same packing, step for step, in a fraction of the time."""
    counts = [t.left for t in takers]
    if not len(nodes) or not sum(counts):
        return
    packer = _PoolPacker(cluster, cluster.pool_of(int(nodes[0])).node, shapes, counts)
    limited = np.asarray([t.limited for t in takers], dtype=np.bool_)
    packer.room[limited] = [t.room for t, lim in zip(takers, limited, strict=True) if lim]
    need = np.asarray([t.need for t in takers], dtype=np.int64)
    owner = [(t, j) for t, tk in enumerate(takers) for j in range(len(tk.wids))]
    w_start = np.cumsum([0, *(len(tk.wids) for tk in takers)], dtype=np.int64)
    i64 = np.int64
    placed, handed, rem = kernel_pack_cpu_pool(
        nodes[awake_first(cluster, nodes)].astype(i64),
        cluster.free_cpu.copy(),
        cluster.free_mem.copy(),
        packer.cap.cpu_millis,
        packer.cap.memory_mib,
        packer.d_cpu,
        packer.d_mem,
        np.ascontiguousarray(packer.norm),
        packer.size,
        packer.left,
        packer.room,
        need,
        limited,
        w_start,
        np.asarray([m for tk in takers for m in tk.rem], dtype=i64),
        np.asarray([m for tk in takers for m in tk.limit], dtype=i64),
        np.asarray([sp for tk in takers for sp in tk.spread], dtype=np.bool_),
        np.asarray([tk.room for tk in takers], dtype=i64),
        exact_below,
    )
    for node, t, k in placed.tolist():
        cluster.allocate_many(node, shapes[t], k)
    for j, node, k in handed.tolist():
        t, i = owner[j]
        takers[t].mine[i].extend([(node, ())] * k)
    for (t, i), k in zip(owner, rem.tolist(), strict=True):
        takers[t].rem[i] = k


def _fill_greedily(
    cluster: Cluster,
    node: int,
    shapes: Sequence[Resources],
    packer: _PoolPacker,
    here: dict[int, list[Slot]],
    first: np.ndarray | None,
    only_first: bool = False,
    stop_at: int = -1,
) -> None:
    """Fill ``node`` step by step with the shape ``packer`` chooses (of those ``first`` marks
    while one of them fits; with ``only_first``, only of those), until nothing fits or it has
    ``stop_at`` millicores free or fewer."""
    while (t := packer.choose(node, first)) >= 0:
        if only_first and first is not None and not first[t]:
            return
        if int(cluster.free_cpu[node]) <= stop_at:
            return
        # place half of what still fits of that shape at once, then choose again: as good
        # as one at a time on the mixes measured, with half the steps
        r = shapes[t]
        fits = min(
            int(cluster.free_cpu[node]) // max(r.cpu_millis, 1),
            int(cluster.free_mem[node]) // max(r.memory_mib, 1),
        )
        want = max(1, min(int(packer.left[t]), int(packer.room[t]), fits // 2))
        mine = here.setdefault(t, [])
        if r.wants_gpu:
            placed = _put_gpu_work(cluster, node, r, want, mine)
        else:  # choose() checked that one fits, and ``fits`` counts how many do
            placed = want
            cluster.allocate_many(node, r, placed)
            mine.extend([(node, ())] * placed)
        packer.placed(t, placed)


class _ExactFill:
    """Each node filled as far as the shapes left can fill its CPU (``exact_fill``), its
    memory near the share the work left asks for per core. A node as empty as the last one
    takes the same choice again while the shapes last (identical empty nodes: one dynamic
    program for many of them)."""

    def __init__(self, packer: _PoolPacker) -> None:
        self.packer = packer
        self.last: tuple[tuple[int, int], np.ndarray] | None = None

    def fill(self, node: int, shapes: Sequence[Resources], here: dict[int, list[Slot]]) -> None:
        packer = self.packer
        cluster = packer.cluster
        start = (int(cluster.free_cpu[node]), int(cluster.free_mem[node]))
        most = np.where(packer.gpu_shape, 0, np.minimum(packer.left, packer.room))
        if self.last is not None and self.last[0] == start and (self.last[1] <= most).all():
            take = self.last[1]  # the same choice again, as far as the shapes last
        else:
            left_cpu = float(most @ packer.d_cpu)
            ratio = float(most @ packer.d_mem) / left_cpu if left_cpu else None
            take = np.asarray(
                best_fill(start[0], start[1], packer.d_cpu, packer.d_mem, most, ratio),
                dtype=np.int64,
            )
        self.last = (start, take)
        for t in np.flatnonzero(take).tolist():
            k = int(take[t])
            cluster.allocate_many(node, shapes[t], k)
            here.setdefault(t, []).extend([(node, ())] * k)
            packer.placed(t, k)


def _put_gpu_work(cluster: Cluster, node: int, r: Resources, want: int, out: list[Slot]) -> int:
    """Up to ``want`` replicas of a GPU request on ``node``, one at a time (each takes its
    own GPUs); how many were placed."""
    for placed in range(want):
        if not cluster.fits(node, r):
            return placed
        out.append((node, cluster.allocate(node, r)))
    return want


class _PoolPacker:
    """The shapes still to pack into one pool and the choice of the next one for a node."""

    def __init__(
        self,
        cluster: Cluster,
        cap: Resources,
        shapes: Sequence[Resources],
        counts: Sequence[int],
    ) -> None:
        self.cluster, self.cap = cluster, cap
        self.left = np.asarray(counts, dtype=np.int64)
        # per shape, how many more of it the node being packed may take (per-node limits)
        self.room = self.left.copy()
        self.demand = np.asarray(
            [[r.cpu_millis, r.memory_mib, r.gpus, r.gpu_millis] for r in shapes], dtype=np.int64
        )
        self.gpu_total = max(cap.gpus * GPU_MILLIS, 1)
        d = self.demand
        self.norm = np.stack(
            [
                d[:, 0] / cap.cpu_millis,
                d[:, 1] / cap.memory_mib,
                (d[:, 2] * GPU_MILLIS + d[:, 3]) / self.gpu_total,
            ],
            axis=1,
        )
        self.size = self.norm.max(axis=1)
        self.norm_sq = self.norm * self.norm
        # per dimension, as flat arrays: choose() runs once per step of packing (20k times at
        # 50k replicas), so it avoids 2-D temporaries
        self.d_cpu, self.d_mem = d[:, 0].copy(), d[:, 1].copy()
        self.d_gpus, self.d_share = d[:, 2].copy(), d[:, 3].copy()
        self.gpu_shape = (self.d_gpus > 0) | (self.d_share > 0)
        self.n_cpu, self.n_mem, self.n_gpu = (self.norm[:, k].copy() for k in range(3))
        # the demand still to place, per dimension (kept up to date as replicas are placed),
        # and what follows from it until the next placement
        self.remaining = (self.norm * self.left[:, None]).sum(axis=0)
        self._reweigh()

    def _reweigh(self) -> None:
        # sums written out in a fixed order: the compiled packing (``pool_kernel``) computes
        # the same floats and so chooses the same shapes
        r, sq = self.remaining, self.norm_sq
        self.weight = w = r / max(float(r[0] + r[1] + r[2]), 1e-12)
        self.base = 1e-9 * self.size - (sq[:, 0] * w[0] + sq[:, 1] * w[1] + sq[:, 2] * w[2])

    def choose(self, node: int, first: np.ndarray | None = None) -> int:
        """The shape to place next on ``node``, or -1 if none that is left fits; of the shapes
        ``first`` marks, if any of them fits."""
        cluster, cap, w = self.cluster, self.cap, self.weight
        free_cpu = int(cluster.free_cpu[node])
        free_mem = int(cluster.free_mem[node])
        fit = (self.room > 0) & (self.d_cpu <= free_cpu) & (self.d_mem <= free_mem)
        if first is not None and (fit & first).any():
            fit &= first
        # weight each dimension by the demand still to place in it, and prefer the shape that
        # leaves the free vector closest to zero: max 2 d.f - d.d (weighted)
        score = self.base + self.n_cpu * (2.0 * free_cpu / cap.cpu_millis * w[0])
        score += self.n_mem * (2.0 * free_mem / cap.memory_mib * w[1])
        if cap.gpus:
            g = cluster.gpu_free[node]
            fit &= (self.d_gpus <= int((g == GPU_MILLIS).sum())) & (self.d_share <= int(g.max()))
            share = float(g[g > 0].sum()) / self.gpu_total
            score += self.n_gpu * (2.0 * share * w[2])
        if not fit.any():
            return -1
        return int(np.argmax(np.where(fit, score, -np.inf)))

    def placed(self, t: int, n: int) -> None:
        self.left[t] -= n
        self.room[t] -= n
        self.remaining -= n * self.norm[t]
        self._reweigh()
