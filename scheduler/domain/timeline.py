"""Capacity in time: the CPU and memory every node holds in each hour of a horizon ahead.

``Cluster`` says what is held now. ``Timeline`` adds when it ends and what is reserved to start
later: work without an end (services, batch without a duration) holds its node ``forever``;
work with a duration holds it from the hour it starts to the hour it ends (rounded outwards to
whole hours, so a timeline never promises capacity that is still in use), whether it runs now
or is a reservation for a later start. ``free`` answers "free capacity on node n during
[t0, t1)". Columns are absolute hours (``forecast.hour_of``) from ``base``, the current hour;
``advance`` drops the hours past, so the cost of a timeline never grows with its history.

Only CPU and memory are kept: work that may start later is CPU-only (see the solver's
``shifting``); GPU work always starts when placed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from scheduler.domain.cluster import Cluster

IntArray = npt.NDArray[np.int64]
DEFAULT_HORIZON_HOURS = 48


@dataclass(frozen=True)
class Hold:
    """What one workload holds: a node per replica, per-replica CPU and memory, from absolute
    hour ``first`` to ``end`` (exclusive; None = no end). ``reserved``: it has not started."""

    nodes: IntArray
    cpu_millis: int
    memory_mib: int
    first: int
    end: int | None
    reserved: bool = False


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

    def copy(self) -> Timeline:
        other = object.__new__(Timeline)
        other.__dict__.update(self.__dict__)
        for name in ("forever_cpu", "forever_mem", "cpu", "mem", "reserved_site"):
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
        )

    @classmethod
    def from_state(cls, cluster: Cluster, state: tuple[Any, ...]) -> Timeline:
        """A timeline of ``cluster``'s nodes as ``state`` describes it (without its holds: it
        answers queries; ``advance`` would lose the hours its holds reach beyond)."""
        base, horizon, fc, fm, cpu, mem, reserved = state
        out = cls(cluster, int(base), int(horizon))
        out.forever_cpu, out.forever_mem, out.cpu, out.mem = fc, fm, cpu, mem
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
    ) -> None:
        """Hold per-replica ``cpu_millis`` and ``memory_mib`` on ``nodes`` (one per replica)
        from absolute hour ``first`` to ``end`` (None: no end, from now on) under ``key``; a
        key held
        before is released first. Unchecked: the caller placed it where it fits."""
        self.release(key)
        h = Hold(np.asarray(nodes, dtype=np.int64), cpu_millis, memory_mib, first, end, reserved)
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
            self.holds[key] = Hold(h.nodes, h.cpu_millis, h.memory_mib, h.first, h.end)
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
        for arr in (self.cpu, self.mem, self.reserved_site):
            if shift >= self.horizon:
                arr[:] = 0
            else:
                arr[:, :-shift] = arr[:, shift:]
                arr[:, -shift:] = 0
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
            return
        a, b = self._columns(h.first, h.end)
        self._add(h, a, b, sign)

    def _add(self, h: Hold, a: int, b: int, sign: int) -> None:
        if b <= a:
            return
        np.add.at(self.cpu[:, a:b], h.nodes, sign * h.cpu_millis)
        np.add.at(self.mem[:, a:b], h.nodes, sign * h.memory_mib)
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
