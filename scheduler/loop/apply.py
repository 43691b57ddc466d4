"""A solver's answer applied to a cluster: which workloads of a batch are placed, which stay
PENDING and which can never be placed, with the capacity of the placed ones taken.

Nothing here knows the loop: ``apply_result`` is a function of the batch, the
``PlacementResult`` and a cluster (changed in place). The loop applies a result to a copy of its
cluster and keeps the copy only once the store has the decisions.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from scheduler.domain import (
    CapacityError,
    Cluster,
    Cost,
    Reason,
    ReasonCode,
    ReplicaPlacement,
    Resources,
    Workload,
    primary_reason_code,
)
from scheduler.solver import PlacementResult
from scheduler.store import Unfit

log = logging.getLogger(__name__)


def reason_code(reasons: Sequence[Reason], final: bool) -> str:
    """The code a workload left unplaced is stored and counted under (``ReasonCode``'s rule)."""
    return primary_reason_code(reasons, final).value


@dataclass(frozen=True)
class Decisions:
    """What a solve decided for a batch, once applied to a cluster: the placed workloads (in
    batch order, with their placements and hourly cost), those that stay PENDING and those that
    can never be placed (UNSCHEDULABLE), each with why."""

    placed: dict[str, tuple[tuple[ReplicaPlacement, ...], Cost]]
    pending: dict[str, Unfit]
    unschedulable: dict[str, Unfit]


def apply_result(
    batch: Sequence[Workload],
    result: PlacementResult,
    cluster: Cluster,
    cordoned: Collection[str] = (),
    moved: bool = False,
) -> Decisions:
    """Take the capacity of ``result``'s placements on ``cluster`` (changed in place) and sort
    ``batch`` into placed, pending and unschedulable. A placement that does not fit must not
    reach the store: its workload stays PENDING (a solver bug, unless replicas ``moved`` since
    the solve took the room), and so does one on a node ``cordoned`` since the solve. CPU-only
    work (most of it) is applied in one step."""
    pending: dict[str, Unfit] = {}
    unschedulable: dict[str, Unfit] = {}
    cpu_work: list[tuple[Workload, Sequence[ReplicaPlacement]]] = []
    one_by_one: list[tuple[Workload, Sequence[ReplicaPlacement]]] = []
    rejected: set[str] = set()
    for w in batch:
        got = result.placements.get(w.id)
        if got and cordoned and any(p.node in cordoned for p in got):
            pending[w.id] = Unfit(ReasonCode.CAPACITY, "its node was cordoned since: tried again")
            rejected.add(w.id)
            continue
        if got and starts_later(got):
            continue  # a reservation: it holds capacity from its start (``Allocation``)
        if got:
            r = w.spec.resources
            (one_by_one if r.gpus or r.gpu_millis else cpu_work).append((w, got))
            continue
        u = result.unplaced.get(w.id)
        if u is None:
            pending[w.id] = Unfit(ReasonCode.CAPACITY, "does not fit now")
        elif u.final:
            unschedulable[w.id] = Unfit(reason_code(u.reasons, True), u.summary, u.reasons)
        else:
            pending[w.id] = Unfit(reason_code(u.reasons, False), u.summary, u.reasons)
    if not allocate_cpu_work(cluster, cpu_work):
        one_by_one = cpu_work + one_by_one
    for w, reps in one_by_one:
        try:
            allocate_replicas(cluster, w.spec.resources, reps)
        except (CapacityError, KeyError) as e:
            if moved:  # a drain or rebalance took the room after the solve
                log.info("placement of %s no longer fits after moves: %s", w.id, e)
            else:
                log.error("solver placement of %s does not fit: %s", w.id, e)
            pending[w.id] = Unfit(ReasonCode.CAPACITY, "does not fit now: placement rejected")
            rejected.add(w.id)
    placed: dict[str, tuple[tuple[ReplicaPlacement, ...], Cost]] = {}
    for w in batch:  # in batch order, as the events will be
        got = result.placements.get(w.id)
        if got and w.id not in rejected:
            placed[w.id] = (tuple(got), result.costs.get(w.id) or Cost())
    return Decisions(placed, pending, unschedulable)


def starts_later(placements: Sequence[ReplicaPlacement]) -> bool:
    """Whether a solver's placements are a reservation: the solver gives a start time only to
    work it places to start at a later hour."""
    return bool(placements) and placements[0].start_time is not None


def allocate_replicas(
    cluster: Cluster, resources: Resources, placements: Sequence[ReplicaPlacement]
) -> None:
    """Take every replica of ``placements`` on ``cluster``, or none: raises ``CapacityError``
    (``KeyError`` for a node the cluster does not have) with ``cluster`` as it was."""
    taken: list[tuple[int, tuple[int, ...]]] = []
    try:
        for p in placements:
            node = cluster.index[p.node]
            taken.append((node, cluster.allocate(node, resources, p.gpu_indices or None)))
    except (CapacityError, KeyError):
        for node, gpus in taken:
            cluster.release(node, resources, gpus)
        raise


def release_replicas(cluster: Cluster, w: Workload, placements: Sequence[ReplicaPlacement]) -> None:
    """Give back what ``allocate_replicas`` took for ``w``; a replica that cannot be given back
    (the cluster does not hold it) is logged and skipped."""
    for p in placements:
        try:
            cluster.release(cluster.index[p.node], w.spec.resources, p.gpu_indices)
        except (CapacityError, KeyError) as e:
            log.error("cannot release %s from %s: %s", w.id, p.node, e)


def allocate_cpu_work(
    cluster: Cluster, placed: Sequence[tuple[Workload, Sequence[ReplicaPlacement]]]
) -> bool:
    """Apply the placements of CPU-only workloads to ``cluster`` all at once, as
    ``Cluster.allocate`` would one replica at a time; False (and ``cluster`` unchanged) if any
    replica does not fit, names an unknown node or carries GPU indices: the caller then applies
    them one by one to find which."""
    n = sum(len(reps) for _, reps in placed)
    if not n:
        return True
    index = cluster.index
    try:
        nodes = np.fromiter(
            (index[p.node] for _, reps in placed for p in reps), dtype=np.int64, count=n
        )
    except KeyError:
        return False
    if any(p.gpu_indices for _, reps in placed for p in reps):
        return False
    cpu = np.fromiter(
        (w.spec.resources.cpu_millis for w, reps in placed for _ in reps), dtype=np.int64, count=n
    )
    mem = np.fromiter(
        (w.spec.resources.memory_mib for w, reps in placed for _ in reps), dtype=np.int64, count=n
    )
    # every request is > 0, so the totals fit exactly when each replica in turn would have
    np.subtract.at(cluster.free_cpu, nodes, cpu)
    np.subtract.at(cluster.free_mem, nodes, mem)
    if (cluster.free_cpu[nodes] < 0).any() or (cluster.free_mem[nodes] < 0).any():
        np.add.at(cluster.free_cpu, nodes, cpu)
        np.add.at(cluster.free_mem, nodes, mem)
        return False
    np.add.at(cluster.replicas_on, nodes, 1)
    return True
