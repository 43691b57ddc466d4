"""Free capacity per node and hour ahead, as the time decision uses it: what each pool offers
in an hour (the joint model's rows), the capacity reservations need taken out of what is free
now (``blocked_cluster``), and the packing of work that starts later (``pack_later``).

``HourlyFree`` holds the timeline's free CPU and memory per node and hour and free millis per
physical GPU and hour; the packing takes from it what it reserves. Work that starts later goes
onto nodes with room in every hour it runs: CPU-only work without GANG one replica count at a
time, the fullest node that fits first (``_WindowFree``, fast); GPU work and GANGs through the
greedy placement (``greedy.place_slots``: one site for a GANG, whole GPUs or a share per GPU,
every replica or none) on a view of the cluster whose free capacity is the least over the hours
of the run, so the GPUs a replica will take at its start are named now.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from scheduler.domain import GPU_MILLIS, Cluster, ReplicaPlacement, Resources, Topology
from scheduler.domain.forecast import HOUR_S, hour_start
from scheduler.domain.timeline import Timeline, hours_covering
from scheduler.solver import greedy
from scheduler.solver.filters import Eligibility
from scheduler.solver.greedy import NodeIndex
from scheduler.solver.problem import PendingWorkload, Problem
from scheduler.solver.runs import RunRates
from scheduler.solver.valley.model import HALF_GPU


@dataclass
class HourlyFree:
    """Free capacity per hour of a timeline's first ``cpu.shape[1]`` hours: CPU and memory
    (nodes x hours), millis per GPU (GPU nodes x GPUs x hours, 0 for a GPU a node lacks).
    ``timeline`` maps nodes to GPU rows."""

    timeline: Timeline
    cpu: np.ndarray
    mem: np.ndarray
    gpu: np.ndarray

    @classmethod
    def of(cls, timeline: Timeline, hours: int) -> HourlyFree:
        cpu, mem = timeline.hourly_free(hours)
        return cls(timeline, cpu, mem, timeline.hourly_gpu_free(hours))

    def pool_free(self, nodes: np.ndarray, col: int) -> dict[str, int]:
        """What ``nodes`` (a pool's) have free in column ``col``, in the model's capacity rows
        (``model.RESOURCES``)."""
        out = {
            "cpu_millis": int(np.maximum(self.cpu[nodes, col], 0).sum()),
            "memory_mib": int(np.maximum(self.mem[nodes, col], 0).sum()),
        }
        rows = self.timeline.gpu_row[nodes]
        g = self.gpu[rows[rows >= 0], :, col]
        out["gpus"] = int((g >= GPU_MILLIS).sum())
        out["gpu_demand_millis"] = int(np.maximum(g, 0).sum())
        out["gpu_slots"] = int((g > HALF_GPU).sum())
        return out

    def gpu_least(self, a: int, b: int) -> np.ndarray:
        """Free millis per GPU over columns [a, b) (the least), as ``Cluster.gpu_free`` has it
        (-1 for a GPU a node lacks)."""
        tl = self.timeline
        least = np.maximum(self.gpu[:, :, a:b].min(axis=2), 0)
        return tl.gpu_free_of(least, np.zeros((len(tl.gpu_row), self.gpu.shape[1]), np.int64))

    def window_cluster(self, cluster: Cluster, nodes: np.ndarray, a: int, b: int) -> Cluster:
        """A copy of ``cluster`` whose ``nodes`` have what is free in every column of [a, b)
        (the others nothing): where a replica that runs then may go."""
        view = cluster.copy()
        view.free_cpu = np.zeros_like(view.free_cpu)
        view.free_mem = np.zeros_like(view.free_mem)
        view.free_cpu[nodes] = np.maximum(self.cpu[nodes, a:b].min(axis=1), 0)
        view.free_mem[nodes] = np.maximum(self.mem[nodes, a:b].min(axis=1), 0)
        least = self.gpu_least(a, b)
        width = min(view.gpu_free.shape[1], least.shape[1])
        view.gpu_free = np.full_like(view.gpu_free, -1)
        view.gpu_free[nodes, :width] = least[nodes, :width]
        return view

    def take(
        self, node: int, a: int, b: int, r: Resources, gpus: Sequence[int], count: int = 1
    ) -> None:
        """``count`` replicas of ``r`` on ``node`` (GPUs: one replica's, ``gpus``) in columns
        [a, b)."""
        self.cpu[node, a:b] -= count * r.cpu_millis
        self.mem[node, a:b] -= count * r.memory_mib
        share = GPU_MILLIS if r.gpus else r.gpu_millis
        row = int(self.timeline.gpu_row[node])
        for g in gpus:
            self.gpu[row, g, a:b] -= share


def blocked_cluster(
    problem: Problem, rest: tuple[PendingWorkload, ...], free: HourlyFree
) -> Cluster:
    """A copy of the cluster whose free CPU, memory and GPUs are what stays free in every hour
    ahead that work of ``rest`` placed now may still run in (to the horizon for work without an
    end): capacity reservations need is not free now."""
    assert problem.now is not None and problem.timeline is not None
    base, horizon = problem.timeline.base, problem.timeline.horizon
    last = 1
    for w in rest:
        _, end = hours_covering(problem.now.timestamp(), w.spec.duration_s)
        last = horizon if end is None else max(last, min(end - base, horizon))
        if last == horizon:
            break
    out = problem.cluster.copy()
    last = min(last, free.cpu.shape[1])
    if last > 1:
        out.free_cpu = np.minimum(out.free_cpu, np.maximum(free.cpu[:, 1:last].min(axis=1), 0))
        out.free_mem = np.minimum(out.free_mem, np.maximum(free.mem[:, 1:last].min(axis=1), 0))
        least = free.gpu_least(1, last)
        width = min(out.gpu_free.shape[1], least.shape[1])
        out.gpu_free = out.gpu_free.copy()
        out.gpu_free[:, :width] = np.minimum(out.gpu_free[:, :width], least[:, :width])
    return out


def pack_later(
    problem: Problem,
    elig: Mapping[str, Eligibility],
    index: NodeIndex,
    chosen: Mapping[str, list[int]],
    rates: RunRates,
    free: HourlyFree,
) -> dict[str, tuple[int, tuple[ReplicaPlacement, ...]]]:
    """Workloads to start later onto nodes with room in every hour they run, at the first of
    their start hours where all replicas fit (module docstring); ``free`` loses what they
    take. Per workload: its start hour and placements (each with its start time and GPUs)."""
    assert problem.timeline is not None
    base = problem.timeline.base
    cluster = problem.cluster
    specs = {w.id: w.spec for w in problem.workloads}
    windows = _WindowFree(index, free)
    out: dict[str, tuple[int, tuple[ReplicaPlacement, ...]]] = {}
    for wid, hours in chosen.items():
        spec = specs[wid]
        r = spec.resources
        simple = not r.wants_gpu and spec.topology != Topology.GANG
        for h in hours:
            first, end = hours_covering(h * HOUR_S, spec.duration_s)
            assert end is not None
            a, b = first - base, end - base
            sites = sorted(
                elig[wid].sites,
                key=lambda s: rates.cost(s, h * HOUR_S, spec.duration_s).money,
            )
            taken: list[tuple[int, tuple[int, ...]]] | None
            if simple:
                pools = [p for s in sites for p in elig[wid].pools_by_site[s]]
                nodes = windows.fit(pools, a, b, spec.replica_count, r)
                taken = None if nodes is None else [(n, ()) for n in sorted(nodes)]
            else:
                view = free.window_cluster(cluster, index.nodes(elig[wid].pools), a, b)
                # every site ranked (the scorer asks); only the eligible ones have nodes here
                order = sites + [s for s in cluster.site_names if s not in sites]
                scorer = greedy.site_ranked(order, cluster.site_names, greedy.best_fit)
                taken = greedy.place_slots(view, index, spec, elig[wid], scorer, sites)
                for node, gpus in taken or ():
                    windows.take(int(cluster.node_pool[node]), node, a, b, r, gpus)
            if taken is None:
                continue
            start = hour_start(h)
            reps = []
            for i, (node, gpus) in enumerate(taken):
                site = cluster.site_of(node)
                rtt = problem.scenario.site(site).latency_ms[spec.origin] if spec.origin else 0.0
                reps.append(ReplicaPlacement(i, site, cluster.node_names[node], rtt, gpus, start))
            out[wid] = (h, tuple(reps))
            break
    return out


class _WindowFree:
    """Free CPU and memory of each pool's nodes over hour windows [a, b) of ``free``: the
    least over the window, kept per (pool, window) and patched as replicas are taken, so
    packing a workload costs a look at one pool's nodes."""

    def __init__(self, index: NodeIndex, free: HourlyFree) -> None:
        self.index, self.free = index, free
        self._cache: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _window(self, pool: int, a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        got = self._cache.get((pool, a, b))
        if got is None:
            nodes = self.index.by_pool[pool]
            got = (
                nodes,
                self.free.cpu[nodes, a:b].min(axis=1),
                self.free.mem[nodes, a:b].min(axis=1),
            )
            self._cache[(pool, a, b)] = got
        return got

    def fit(
        self, pools: list[int], a: int, b: int, replicas: int, r: Resources
    ) -> list[int] | None:
        """Nodes for ``replicas`` replicas of CPU-only ``r`` (a node may take several) from
        ``pools`` in order, each pool's fullest nodes that fit first, taken; None (nothing
        taken) if they do not all fit."""
        cpu, mem = r.cpu_millis, r.memory_mib
        plan: list[tuple[int, int, int]] = []  # (pool, node, replicas)
        left = replicas
        for p in pools:
            nodes, fc, fm = self._window(p, a, b)
            room = np.minimum(fc // max(cpu, 1), fm // max(mem, 1))
            ok = np.flatnonzero(room > 0)
            for j in ok[np.argsort(fc[ok], kind="stable")]:
                k = min(int(room[j]), left)
                plan.append((p, int(nodes[j]), k))
                left -= k
                if not left:
                    break
            if not left:
                break
        if left:
            return None
        for p, node, k in plan:
            self.take(p, node, a, b, r, (), k)
        return [node for _, node, k in plan for _ in range(k)]

    def take(
        self,
        pool: int,
        node: int,
        a: int,
        b: int,
        r: Resources,
        gpus: Sequence[int],
        count: int = 1,
    ) -> None:
        """``HourlyFree.take`` on ``node`` (of ``pool``), and the windows it overlaps patched."""
        self.free.take(node, a, b, r, gpus, count)
        for (q, a2, b2), (nodes, fc, fm) in self._cache.items():
            if q == pool and a2 < b and a < b2:
                j = int(np.searchsorted(nodes, node))
                fc[j] = self.free.cpu[node, a2:b2].min()
                fm[j] = self.free.mem[node, a2:b2].min()
