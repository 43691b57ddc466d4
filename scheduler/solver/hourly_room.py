"""The room reservations leave later, hour by hour, as a plan that displaces and places work
(preemption, a drain, a rebalance) goes: ``HourlyRoom``.

Every plan that takes work off nodes and puts it elsewhere needs the hours themselves: a
victim of a preemption, or a replica a drain or a rebalance moves, frees room later only in the
hours it would have run (one that ends before a reservation starts frees none for it, one that
runs for good frees it in every hour); a victim spared beside the preemptor must fit in every
hour it runs; a preemptor, or a moved replica, that ends before a reservation starts does not
need the reservation's room; and each step of the plan sees what the steps before it took and
freed.

So on the nodes that hold reservations, free CPU, memory and millis per GPU are kept per hour
of the timeline (the problem's, whose holds are keyed by workload id, as the loop keeps them),
and a replica fits where it fits now (the cluster) and in every hour of its run. Elsewhere
nothing starts later: what fits now fits in every hour ahead, and the cluster alone answers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from scheduler.domain import GPU_MILLIS, Cluster, Resources, Workload
from scheduler.domain.timeline import Timeline, hours_covering
from scheduler.solver.problem import Problem

# the timeline's columns [a, b) a run holds
Span = tuple[int, int]
# what one replica holds on a node in a span: (node, span, CPU, memory, GPUs, millis per GPU)
Piece = tuple[int, Span, int, int, tuple[int, ...], int]


class HourlyRoom:
    """See the module docstring. Changes are kept from creation (or ``copy``) so that
    ``undo_to`` a ``mark`` takes them back, as ``Cluster``'s do."""

    def __init__(self, problem: Problem) -> None:
        cluster, tl = problem.cluster, problem.timeline
        self.timeline: Timeline | None = tl
        self.now = problem.now
        # per node, its row of CPU and memory here, and of GPUs (-1: it holds no reservation,
        # or has no GPUs; the cluster answers for it)
        self.row = np.full(len(cluster), -1, dtype=np.int64)
        self.gpu_row = self.row.copy()
        held = [h.nodes for h in tl.holds.values() if h.reserved] if tl is not None else []
        nodes = np.unique(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
        self.row[nodes] = np.arange(len(nodes))
        gpu_nodes = nodes[cluster.n_gpus[nodes] > 0]
        self.gpu_row[gpu_nodes] = np.arange(len(gpu_nodes))
        hours = tl.horizon if tl is not None else 0
        width = cluster.gpu_free.shape[1]
        # int32, as the timeline keeps them: copied for every trial of a plan
        self.cpu = np.zeros((len(nodes), hours), dtype=np.int32)
        self.mem = np.zeros((len(nodes), hours), dtype=np.int32)
        self.gpu = np.zeros((len(gpu_nodes), width, hours), dtype=np.int32)
        if tl is not None and len(nodes):
            cpu, mem = tl.hourly_free()
            self.cpu[:], self.mem[:] = cpu[nodes], mem[nodes]
            free = tl.hourly_gpu_free()
            w = min(width, free.shape[1])
            self.gpu[:, :w] = free[tl.gpu_row[gpu_nodes], :w]
        # (node, span, cpu, mem, GPUs, millis per GPU, sign) of every change, for ``undo_to``
        self._journal: list[tuple[int, Span, int, int, tuple[int, ...], int, int]] = []
        # what each victim holds here (``_held_by``), shared by the copies: the holds stay
        self._pieces: dict[str, list[Piece]] = {}

    def copy(self) -> HourlyRoom:
        """A copy to plan a trial on (its arrays and changes its own)."""
        other = object.__new__(HourlyRoom)
        other.__dict__.update(self.__dict__)
        other.cpu, other.mem, other.gpu = self.cpu.copy(), self.mem.copy(), self.gpu.copy()
        other._journal = []
        return other

    # ------------------------------------------------------------------ spans

    def span(self, duration_s: int) -> Span:
        """The columns a run that starts now for ``duration_s`` (0: for good) holds; every
        column without a ``now``."""
        tl = self.timeline
        if tl is None:
            return 0, 0
        if self.now is None:
            return 0, tl.horizon
        return self._columns(*hours_covering(self.now.timestamp(), duration_s))

    def run_span(self, start_s: float | None, duration_s: int) -> Span:
        """The columns a run that started at epoch second ``start_s`` (None: not known) for
        ``duration_s`` (0: for good) holds from now on: the hours the timeline holds for it
        (a moved replica keeps its start, so the span it leaves is the span it takes)."""
        if self.timeline is None:
            return 0, 0
        if start_s is None:
            return self.span(duration_s)
        return self._columns(*hours_covering(start_s, duration_s))

    def _columns(self, first: int, end: int | None) -> Span:
        tl = self.timeline
        assert tl is not None
        a = max(first, tl.base) - tl.base
        b = (tl.end if end is None else min(end, tl.end)) - tl.base
        return a, max(a, b)

    # ------------------------------------------------------------------ queries

    def fit_mask(
        self, cluster: Cluster, r: Resources, nodes: npt.NDArray[np.int64], span: Span
    ) -> npt.NDArray[np.bool_]:
        """Which of ``nodes`` can take one replica of ``r`` now (``cluster``) and in every hour
        of ``span`` (GPUs: some that are free enough in both)."""
        mask = cluster.fit_mask(r, nodes)
        a, b = span
        sel = np.flatnonzero(mask & (self.row[nodes] >= 0))
        if not len(sel) or b <= a:
            return mask
        rows = self.row[nodes[sel]]
        ok = (self.cpu[rows, a:b].min(axis=1) >= r.cpu_millis) & (
            self.mem[rows, a:b].min(axis=1) >= r.memory_mib
        )
        if r.wants_gpu:  # the nodes that fit it now have GPUs
            later = self.gpu[self.gpu_row[nodes[sel]], :, a:b].min(axis=2)
            free = np.minimum(cluster.gpu_free[nodes[sel]], later)
            if r.gpus:
                ok &= (free == GPU_MILLIS).sum(axis=1) >= r.gpus
            else:
                ok &= (free >= r.gpu_millis).any(axis=1)
        mask[sel] = ok
        return mask

    def fits(self, cluster: Cluster, r: Resources, node: int, span: Span) -> bool:
        """``fit_mask`` of one node (without arrays where it can: the planner asks it of
        every node it tries victims on)."""
        row = self.row[node]
        a, b = span
        if row < 0 or b <= a:
            return cluster.fits(node, r)
        if r.wants_gpu:
            return bool(self.fit_mask(cluster, r, np.array([node], dtype=np.int64), span)[0])
        return (
            cluster.fits(node, r)
            and int(self.cpu[row, a:b].min()) >= r.cpu_millis
            and int(self.mem[row, a:b].min()) >= r.memory_mib
        )

    def choose_gpus(
        self, cluster: Cluster, node: int, r: Resources, span: Span
    ) -> tuple[int, ...] | None:
        """The GPUs one replica of ``r`` takes on ``node``: ``Cluster.choose_gpus``'s rule
        over what is free now and in every hour of ``span``; None where the cluster's own
        choice will do (no GPUs wanted, or the node holds no reservation)."""
        a, b = span
        row = self.gpu_row[node]
        if not r.wants_gpu or row < 0 or b <= a:
            return None
        view = cluster.copy()
        view.gpu_free[node] = np.minimum(cluster.gpu_free[node], self.gpu[row, :, a:b].min(axis=1))
        return view.choose_gpus(node, r)

    # ------------------------------------------------------------------ changes

    def take(self, node: int, r: Resources, gpus: Sequence[int], span: Span) -> None:
        """A replica of ``r`` placed on ``node`` (on ``gpus``) holds the room of ``span``."""
        share = GPU_MILLIS if r.gpus else r.gpu_millis
        self._add(node, span, r.cpu_millis, r.memory_mib, tuple(gpus), share, -1)

    def give_back(self, node: int, r: Resources, gpus: Sequence[int], span: Span) -> None:
        """A replica of ``r`` taken off ``node`` (off ``gpus``) gives back the room of
        ``span``, the hours it would have held there (``take``'s counterpart: a move)."""
        share = GPU_MILLIS if r.gpus else r.gpu_millis
        self._add(node, span, r.cpu_millis, r.memory_mib, tuple(gpus), share, 1)

    def give(self, w: Workload, node: int | None = None) -> None:
        """``w`` (a victim) leaves: the room it held in the timeline comes back in the hours it
        held it (only on ``node``, if given)."""
        for n, span, cpu, mem, gpus, share in self._held_by(w):
            if node is None or n == node:
                self._add(n, span, cpu, mem, gpus, share, 1)

    def restore(self, w: Workload) -> bool:
        """``w`` (a victim) back where it was, if the room of every hour it holds is there
        still: whether it was (nothing changed if not)."""
        mark = self.mark()
        for n, span, cpu, mem, gpus, share in self._held_by(w):
            row = self.row[n]
            a, b = span
            if row >= 0 and b > a:
                room = [self.cpu[row, a:b] >= cpu, self.mem[row, a:b] >= mem]
                room += [self.gpu[self.gpu_row[n], g, a:b] >= share for g in gpus]
                if not all(x.all() for x in room):
                    self.undo_to(mark)
                    return False
            self._add(n, span, cpu, mem, gpus, share, -1)
        return True

    def mark(self) -> int:
        """Where ``undo_to`` takes the changes back to."""
        return len(self._journal)

    def undo_to(self, mark: int) -> None:
        """Take back every change since ``mark``, newest first."""
        while len(self._journal) > mark:
            node, span, cpu, mem, gpus, share, sign = self._journal.pop()
            self._add(node, span, cpu, mem, gpus, share, -sign, keep=False)

    def _held_by(self, w: Workload) -> list[Piece]:
        """What ``w`` holds in the timeline on the nodes with rows here, a replica's CPU and
        memory and each of its GPUs apart."""
        known = self._pieces.get(w.id)
        if known is not None:
            return known
        tl = self.timeline
        h = tl.holds.get(w.id) if tl is not None else None
        out: list[Piece] = []
        if tl is not None and h is not None:  # else it holds nothing later (no timeline)
            span = self._columns(h.first, h.end)
            out = [(int(n), span, h.cpu_millis, h.memory_mib, (), 0) for n in h.nodes]
            for r, g in zip(h.gpu_rows.tolist(), h.gpu_cols.tolist(), strict=True):
                out.append((int(tl.gpu_nodes[r]), span, 0, 0, (g,), h.gpu_share))
        self._pieces[w.id] = [x for x in out if self.row[x[0]] >= 0]
        return self._pieces[w.id]

    def _add(
        self,
        node: int,
        span: Span,
        cpu: int,
        mem: int,
        gpus: tuple[int, ...],
        share: int,
        sign: int,
        keep: bool = True,
    ) -> None:
        row = self.row[node]
        a, b = span
        if row < 0 or b <= a:
            return
        self.cpu[row, a:b] += sign * cpu
        self.mem[row, a:b] += sign * mem
        for g in gpus:
            self.gpu[self.gpu_row[node], g, a:b] += sign * share
        if keep:
            self._journal.append((node, span, cpu, mem, gpus, share, sign))
