"""The node-level placement of one cycle while it is packed and repaired, with transactions.

Packing and every repair change the placement only through ``PackingState``: it keeps the
cluster (the cycle's own copy) and, per placed workload, the node and GPUs of each replica in
one format, and knows which replicas sit on which node. A repair that tries something runs it
in ``transaction()`` and rolls it back when it does not pay: the cluster's own journal takes
back every allocation, the state's takes back its records.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from scheduler.domain import Cluster, ReplicaPlacement, WorkloadSpec
from scheduler.solver.filters import Eligibility
from scheduler.solver.greedy import IntArray, NodeIndex
from scheduler.solver.problem import PendingWorkload, Problem, SolverParams

# a replica's place: the node's index in the cluster and the physical GPUs it uses
Slot = tuple[int, tuple[int, ...]]
ReplicaRef = tuple[str, int]  # (workload id, replica number)


class PackingState:
    """See the module docstring. ``cluster`` is changed in place; ``problem.cluster`` never."""

    def __init__(
        self,
        problem: Problem,
        params: SolverParams,
        elig: Mapping[str, Eligibility],
        cluster: Cluster | None = None,
        index: NodeIndex | None = None,
    ) -> None:
        self.problem = problem
        self.params = params
        self.elig = elig
        self.cluster = problem.cluster.copy() if cluster is None else cluster
        self.index = NodeIndex(self.cluster) if index is None else index
        self.specs: dict[str, WorkloadSpec] = {w.id: w.spec for w in problem.workloads}
        # nodes powered before this cycle: waking one costs its idle power
        self.awake_before = problem.cluster.replicas_on > 0
        self._slots: dict[str, list[Slot]] = {}
        self._on_node: defaultdict[int, dict[ReplicaRef, None]] = defaultdict(dict)
        self._lifted: set[ReplicaRef] = set()
        self._undo: list[Callable[[], None]] | None = None

    # ------------------------------------------------------------------ reading

    def __contains__(self, wid: str) -> bool:
        return wid in self._slots

    def placed(self) -> list[str]:
        """Workloads placed, in the order they were placed."""
        return list(self._slots)

    def slots(self, wid: str) -> tuple[Slot, ...]:
        return tuple(self._slots[wid])

    def on_node(self, node: int) -> list[ReplicaRef]:
        """The replicas of this cycle on ``node``, in the order they came."""
        return list(self._on_node.get(node, ()))

    def room_for(self, wid: str, node: int) -> int:
        """How many more replicas of ``wid`` ``node`` may take under its per-node limit
        (``Eligibility.per_node``; lifted replicas do not count)."""
        here = sum(1 for w, _ in self._on_node.get(node, ()) if w == wid)
        return self.elig[wid].per_node - here

    def with_room(self, wid: str, nodes: IntArray) -> IntArray:
        """Those of ``nodes`` that may take one more replica of ``wid`` (``room_for`` > 0)."""
        limit = self.elig[wid].per_node
        slots = self._slots.get(wid, ())
        if limit >= len(slots):
            return nodes
        held = Counter(node for i, (node, _) in enumerate(slots) if (wid, i) not in self._lifted)
        full = [node for node, k in held.items() if k >= limit]
        if not full:
            return nodes
        return nodes[~np.isin(nodes, np.asarray(full, dtype=np.int64))]

    def woken(self, nodes: IntArray) -> IntArray:
        """Those of ``nodes`` that are powered now and were not before this cycle."""
        return nodes[(self.cluster.replicas_on[nodes] > 0) & ~self.awake_before[nodes]]

    def open_workloads(self) -> list[PendingWorkload]:
        """Workloads neither placed nor ruled out for good, in arrival order."""
        return [
            w
            for w in self.problem.workloads
            if w.id not in self._slots and not self.elig[w.id].final_reason
        ]

    def placements(self) -> dict[str, tuple[ReplicaPlacement, ...]]:
        """The placement as the solver returns it: replicas numbered in node order."""
        cluster = self.cluster
        # per node its site's name and index; per site its latencies (50k replicas at a time)
        site_names = cluster.site_names
        node_site = cluster.node_site.tolist()
        latency = [self.problem.scenario.site(name).latency_ms for name in site_names]
        names = cluster.node_names
        out = {}
        for wid, slots in self._slots.items():
            origin = self.specs[wid].origin
            reps = []
            for i, (node, gpus) in enumerate(sorted(slots)):
                site = node_site[node]
                rtt = latency[site][origin] if origin else 0.0
                reps.append(ReplicaPlacement(i, site_names[site], names[node], rtt, gpus))
            out[wid] = tuple(reps)
        return out

    # ------------------------------------------------------------------ changing

    def place(self, wid: str, slots: list[Slot]) -> None:
        """Record ``wid`` as placed on ``slots``, which the caller has allocated already."""
        if wid in self._slots:
            raise ValueError(f"{wid} is placed already")
        self._slots[wid] = list(slots)
        for i, (node, _) in enumerate(slots):
            self._on_node[node][(wid, i)] = None
        self._record(lambda: self._forget(wid))

    def place_on(
        self, wid: str, nodes: Sequence[str], gpus: Sequence[tuple[int, ...]] | None = None
    ) -> None:
        """Allocate replica ``i`` of ``wid`` on the node named ``nodes[i]`` (on ``gpus[i]``
        where given, else the GPUs ``Cluster.allocate`` chooses) and record it."""
        r = self.specs[wid].resources
        slots: list[Slot] = []
        for i, name in enumerate(nodes):
            node = self.cluster.index[name]
            slots.append((node, self.cluster.allocate(node, r, None if gpus is None else gpus[i])))
        self.place(wid, slots)

    def remove(self, wid: str) -> None:
        """Take ``wid`` out, releasing its capacity."""
        slots = self._slots[wid]
        r = self.specs[wid].resources
        for i, (node, gpus) in enumerate(slots):
            if (wid, i) not in self._lifted:
                self.cluster.release(node, r, gpus)
        self._forget(wid)
        self._record(lambda: self._restore(wid, slots))

    def move(self, wid: str, i: int, node: int, gpus: tuple[int, ...] | None = None) -> Slot:
        """Move replica ``i`` of ``wid`` to ``node`` (GPUs chosen there unless given)."""
        self.lift(wid, i)
        return self.put(wid, i, node, gpus)

    def lift(self, wid: str, i: int) -> None:
        """Release replica ``i`` of ``wid`` until ``put`` places it again (within the same
        transaction: a lifted replica left at commit is an error)."""
        ref = (wid, i)
        if ref in self._lifted:
            raise ValueError(f"replica {i} of {wid} is lifted already")
        node, gpus = self._slots[wid][i]
        self.cluster.release(node, self.specs[wid].resources, gpus)
        self._lifted.add(ref)
        del self._on_node[node][ref]

        def undo() -> None:
            self._lifted.discard(ref)
            self._on_node[node][ref] = None

        self._record(undo)

    def put(self, wid: str, i: int, node: int, gpus: tuple[int, ...] | None = None) -> Slot:
        """Place lifted replica ``i`` of ``wid`` on ``node``."""
        ref = (wid, i)
        if ref not in self._lifted:
            raise ValueError(f"replica {i} of {wid} is not lifted")
        old = self._slots[wid][i]
        slot = (node, self.cluster.allocate(node, self.specs[wid].resources, gpus))
        self._slots[wid][i] = slot
        self._lifted.discard(ref)
        self._on_node[node][ref] = None

        def undo() -> None:
            self._slots[wid][i] = old
            self._lifted.add(ref)
            del self._on_node[node][ref]

        self._record(undo)
        return slot

    # ------------------------------------------------------------------ transactions

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Changes made inside are kept unless ``rollback()`` is called or an exception leaves
        the block (it is rolled back, then raised). Transactions nest."""
        outer = self._undo is None
        if self._undo is None:
            self._undo = []
        tx = Transaction(self, self.cluster.mark(), len(self._undo))
        try:
            yield tx
            if outer and self._lifted:
                raise ValueError(f"replicas left lifted: {sorted(self._lifted)[:5]}")
        except BaseException:
            tx.rollback()
            raise
        finally:
            if outer:
                self._undo = None
                self.cluster.forget(0)

    def _record(self, undo: Callable[[], None]) -> None:
        if self._undo is not None:
            self._undo.append(undo)

    def _forget(self, wid: str) -> None:
        for i, (node, _) in enumerate(self._slots.pop(wid)):
            self._on_node[node].pop((wid, i), None)
            self._lifted.discard((wid, i))

    def _restore(self, wid: str, slots: list[Slot]) -> None:
        self._slots[wid] = slots
        for i, (node, _) in enumerate(slots):
            self._on_node[node][(wid, i)] = None


@dataclass
class Transaction:
    state: PackingState
    cluster_mark: int
    undo_mark: int

    def rollback(self) -> None:
        """Take back every change since the transaction began (it stays open)."""
        self.state.cluster.undo_to(self.cluster_mark)
        undo = self.state._undo
        assert undo is not None
        while len(undo) > self.undo_mark:
            undo.pop()()
