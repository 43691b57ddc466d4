"""Capacity in time: the CPU, memory and GPUs every node holds in each hour of a horizon ahead.

``Cluster`` says what is held now. ``Timeline`` adds when it ends and what is reserved to start
later: work without an end (services, batch without a duration) holds its node ``forever``;
work with a duration holds it from the hour it starts to the hour it ends (rounded outwards to
whole hours, so a timeline never promises capacity that is still in use), whether it runs now
or is a reservation for a later start. ``free`` answers "free capacity on node n during
[t0, t1)". Columns are absolute hours (``forecast.hour_of``) from ``base``, the current hour;
``advance`` drops the hours past, so the cost of a timeline never grows with its history.

GPUs are kept per physical GPU, as ``Cluster.gpu_free`` keeps them (a share of one GPU, or
whole GPUs): a hold names the GPUs of each replica (``ReplicaPlacement.gpu_indices``), so a
reservation holds the very GPUs it will take at its start, and the millis each holds. Only
nodes with GPUs have GPU columns (``gpu_nodes``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from scheduler.domain.cluster import Cluster
from scheduler.domain.resources import GPU_MILLIS

IntArray = npt.NDArray[np.int64]
DEFAULT_HORIZON_HOURS = 48


@dataclass(frozen=True)
class Hold:
    """What one workload holds: a node per replica, per-replica CPU and memory, from absolute
    hour ``first`` to ``end`` (exclusive; None = no end). ``reserved``: it has not started.
    ``gpu_rows`` and ``gpu_cols``: the (GPU node row, GPU) of every GPU its replicas hold, each
    holding ``gpu_share`` millis of it."""

    nodes: IntArray
    cpu_millis: int
    memory_mib: int
    first: int
    end: int | None
    reserved: bool = False
    gpu_rows: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    gpu_cols: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    gpu_share: int = 0


class Timeline:
    """See the module docstring. Change it only through ``hold`` / ``release`` / ``advance``;
    copy before speculative changes."""

    def __init__(self, cluster: Cluster, now_hour: int, horizon: int = DEFAULT_HORIZON_HOURS):
        if horizon < 2:
            raise ValueError("a timeline needs at least 2 hours")
        n = len(cluster)
        self.horizon = horizon
        self.base = now_hour
        self.cap_cpu = cluster.cap_cpu
        self.cap_mem = cluster.cap_mem
        self.node_site = cluster.node_site
        self.n_sites = len(cluster.site_names)
        self.forever_cpu = np.zeros(n, dtype=np.int64)
        self.forever_mem = np.zeros(n, dtype=np.int64)
        # int32: a node's millicores and MiB fit, and the loop copies these every cycle
        self.cpu = np.zeros((n, horizon), dtype=np.int32)
        self.mem = np.zeros((n, horizon), dtype=np.int32)
        self.holds: dict[str, Hold] = {}
        self.reserved = 0  # holds that have not started
        # cores those hold per site and hour (sites x horizon), kept as they change
        self.reserved_site = np.zeros((self.n_sites, horizon))
        # GPUs, of the nodes that have any: row r is node ``gpu_nodes[r]``; millis per GPU
        # (a GPU a node lacks has capacity 0, so nothing ever fits there)
        self.gpu_nodes = np.flatnonzero(cluster.n_gpus > 0)
        self.gpu_row = np.full(n, -1, dtype=np.int64)
        self.gpu_row[self.gpu_nodes] = np.arange(len(self.gpu_nodes))
        cols = np.arange(max(cluster.max_gpus, 1))
        self.gpu_cap = np.where(
            cols[None, :] < cluster.n_gpus[self.gpu_nodes, None], GPU_MILLIS, 0
        ).astype(np.int64)
        self.forever_gpu = np.zeros_like(self.gpu_cap)
        # int16: a GPU's millis fit
        self.gpu = np.zeros((len(self.gpu_nodes), len(cols), horizon), dtype=np.int16)

    def copy(self) -> Timeline:
        other = object.__new__(Timeline)
        other.__dict__.update(self.__dict__)
        arrays = ("forever_cpu", "forever_mem", "cpu", "mem", "reserved_site", "forever_gpu", "gpu")
        for name in arrays:
            setattr(other, name, getattr(self, name).copy())
        other.holds = dict(self.holds)
        return other

    def without_room_on(self, nodes: Sequence[int]) -> Timeline:
        """A copy in which ``nodes`` have no room in any hour (cordoned: nothing new, not even
        a reservation for later); what they hold stays."""
        other = self.copy()
        if len(nodes):
            other.cap_cpu = self.cap_cpu.copy()
            other.cap_mem = self.cap_mem.copy()
            other.cap_cpu[list(nodes)] = 0
            other.cap_mem[list(nodes)] = 0
            rows = self.gpu_row[list(nodes)]
            other.gpu_cap = self.gpu_cap.copy()
            other.gpu_cap[rows[rows >= 0]] = 0
        return other

    def __len__(self) -> int:
        return len(self.holds)

    def state(self) -> tuple[Any, ...]:
        """What a solver needs of this timeline (not the holds), for ``from_state``."""
        return (
            self.base,
            self.horizon,
            self.forever_cpu,
            self.forever_mem,
            self.cpu,
            self.mem,
            self.reserved,
            self.forever_gpu,
            self.gpu,
            (self.cap_cpu, self.cap_mem, self.gpu_cap),
        )

    @classmethod
    def from_state(cls, cluster: Cluster, state: tuple[Any, ...]) -> Timeline:
        """A timeline of ``cluster``'s nodes as ``state`` describes it (without its holds: it
        answers queries; ``advance`` would lose the hours its holds reach beyond)."""
        base, horizon, fc, fm, cpu, mem, reserved, fg, gpu, caps = state
        out = cls(cluster, int(base), int(horizon))
        out.forever_cpu, out.forever_mem, out.cpu, out.mem = fc, fm, cpu, mem
        out.forever_gpu, out.gpu = fg, gpu
        # a cordoned node's capacity is none (``without_room_on``): the state carries it
        out.cap_cpu, out.cap_mem, out.gpu_cap = caps
        out.reserved = int(reserved)
        return out

    @property
    def end(self) -> int:
        """The first absolute hour past the horizon."""
        return self.base + self.horizon

    # ------------------------------------------------------------------ queries

    def free(
        self, first: int, end: int, nodes: IntArray | None = None
    ) -> tuple[IntArray, IntArray]:
        """Free CPU and memory of every node (or those listed) during absolute hours
        [first, end): the least over those hours, the part beyond the horizon not counted."""
        sel = slice(None) if nodes is None else nodes
        a, b = max(first, self.base) - self.base, min(end, self.end) - self.base
        cpu = self.cap_cpu[sel] - self.forever_cpu[sel]
        mem = self.cap_mem[sel] - self.forever_mem[sel]
        if b > a:
            cpu = cpu - self.cpu[sel, a:b].max(axis=1)
            mem = mem - self.mem[sel, a:b].max(axis=1)
        return cpu, mem

    def hourly_free(self, hours: int | None = None) -> tuple[IntArray, IntArray]:
        """Free CPU and memory per node and hour of the horizon (or of its first ``hours``):
        (nodes x hours) arrays, the caller's to change."""
        n = self.horizon if hours is None else min(hours, self.horizon)
        return (
            (self.cap_cpu - self.forever_cpu)[:, None] - self.cpu[:, :n],
            (self.cap_mem - self.forever_mem)[:, None] - self.mem[:, :n],
        )

    def hourly_gpu_free(self, hours: int | None = None) -> IntArray:
        """Free millis per GPU of each GPU node (``gpu_nodes`` order) and hour of the horizon
        (or of its first ``hours``): a (GPU nodes x GPUs x hours) array, the caller's to
        change; 0 for a GPU a node lacks."""
        n = self.horizon if hours is None else min(hours, self.horizon)
        free = (self.gpu_cap - self.forever_gpu)[:, :, None] - self.gpu[:, :, :n]
        return np.asarray(free, dtype=np.int64)

    def gpu_free_of(self, free: IntArray, like: IntArray) -> IntArray:
        """``free`` (GPU nodes x GPUs, as a column of ``hourly_gpu_free``) as ``Cluster.gpu_free``
        has it (``like``): every node's row, -1 for a GPU a node lacks."""
        out = np.full_like(like, -1)
        g = min(free.shape[1], like.shape[1])
        out[self.gpu_nodes, :g] = np.where(self.gpu_cap[:, :g] > 0, free[:, :g], -1)
        return out

    def reserved_cores(self) -> npt.NDArray[np.float64]:
        """Cores reserved (not started) per site and hour of the horizon (sites x horizon)."""
        return self.reserved_site.copy()

    # ------------------------------------------------------------------ changes

    def hold(
        self,
        key: str,
        nodes: Sequence[int] | IntArray,
        cpu_millis: int,
        memory_mib: int,
        first: int,
        end: int | None,
        reserved: bool = False,
        *,
        gpus: Sequence[Sequence[int]] = (),
        gpu_share: int = 0,
    ) -> None:
        """Hold per-replica ``cpu_millis`` and ``memory_mib`` on ``nodes`` (one per replica),
        and ``gpu_share`` millis of each GPU ``gpus`` names (per replica, its node's GPU
        indices), from absolute hour ``first`` to ``end`` (None: no end, from now on) under
        ``key``; a key held before is released first. Unchecked: the caller placed it where it
        fits."""
        self.release(key)
        node_arr = np.asarray(nodes, dtype=np.int64)
        rows = [int(self.gpu_row[n]) for n, g in zip(node_arr, gpus, strict=False) for _ in g]
        cols = [int(i) for g in gpus for i in g]
        h = Hold(
            node_arr,
            cpu_millis,
            memory_mib,
            first,
            end,
            reserved,
            np.asarray(rows, dtype=np.int64),
            np.asarray(cols, dtype=np.int64),
            gpu_share if cols else 0,
        )
        self.holds[key] = h
        self.reserved += reserved
        self._apply(h, 1)

    def release(self, key: str) -> bool:
        """Give back what ``key`` holds; False if it holds nothing."""
        h = self.holds.pop(key, None)
        if h is None:
            return False
        self.reserved -= h.reserved
        self._apply(h, -1)
        return True

    def started(self, key: str) -> None:
        """A reservation has started: it holds the same, no longer as a reservation."""
        h = self.holds.get(key)
        if h is not None and h.reserved:
            self._add_reserved(h, *self._columns(h.first, h.end), -1)
            self.holds[key] = replace(h, reserved=False)
            self.reserved -= 1

    def advance(self, now_hour: int) -> None:
        """Make ``now_hour`` the first column: the hours past are dropped, the new hours at the
        end filled from the holds that reach them."""
        shift = now_hour - self.base
        if shift <= 0:
            return
        # the first hour no column held before
        fill_from = self.end if shift < self.horizon else now_hour
        self.base = now_hour
        for arr in (self.cpu, self.mem, self.reserved_site, self.gpu):
            if shift >= self.horizon:
                arr[:] = 0
            else:
                arr[..., :-shift] = arr[..., shift:]
                arr[..., -shift:] = 0
        for h in self.holds.values():
            # holds without an end are in ``forever``; those ending within the old horizon
            # had every hour they reach there already
            if h.end is not None and h.end > fill_from:
                a, b = self._columns(max(h.first, fill_from), h.end)
                self._add(h, a, b, 1)

    def _columns(self, first: int, end: int | None) -> tuple[int, int]:
        a = max(first, self.base) - self.base
        b = (self.end if end is None else min(end, self.end)) - self.base
        return a, max(a, b)

    def _apply(self, h: Hold, sign: int) -> None:
        if h.end is None:
            np.add.at(self.forever_cpu, h.nodes, sign * h.cpu_millis)
            np.add.at(self.forever_mem, h.nodes, sign * h.memory_mib)
            np.add.at(self.forever_gpu, (h.gpu_rows, h.gpu_cols), sign * h.gpu_share)
            return
        a, b = self._columns(h.first, h.end)
        self._add(h, a, b, sign)

    def _add(self, h: Hold, a: int, b: int, sign: int) -> None:
        if b <= a:
            return
        np.add.at(self.cpu[:, a:b], h.nodes, sign * h.cpu_millis)
        np.add.at(self.mem[:, a:b], h.nodes, sign * h.memory_mib)
        if h.gpu_share:
            np.add.at(self.gpu[:, :, a:b], (h.gpu_rows, h.gpu_cols), sign * h.gpu_share)
        if h.reserved:
            self._add_reserved(h, a, b, sign)

    def _add_reserved(self, h: Hold, a: int, b: int, sign: int) -> None:
        if b > a:
            sites = self.node_site[h.nodes]
            np.add.at(self.reserved_site[:, a:b], sites, sign * h.cpu_millis / 1000.0)


def hours_covering(start_s: float, duration_s: int | None) -> tuple[int, int | None]:
    """The absolute hours [first, end) a run from epoch second ``start_s`` for ``duration_s``
    touches (None or 0: no end)."""
    first = math.floor(start_s / 3600)
    if not duration_s:
        return first, None
    return first, math.ceil((start_s + duration_s) / 3600)
