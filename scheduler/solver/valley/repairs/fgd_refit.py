"""Place this cycle's GPU work again where it fragments the GPUs least (FGD)."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import numpy as np

from scheduler.domain import GPU_MILLIS
from scheduler.solver.budget import TimeBudget
from scheduler.solver.fragmentation import FragmentationScorer, RequestType
from scheduler.solver.valley.state import PackingState, ReplicaRef, Slot

# scorers by target workload: a scorer keeps per-node results between solves
_SCORERS: dict[tuple[RequestType, ...], FragmentationScorer] = {}


def _scorer(target: tuple[RequestType, ...]) -> FragmentationScorer:
    scorer = _SCORERS.get(target)
    if scorer is None:
        if len(_SCORERS) >= 4:
            _SCORERS.pop(next(iter(_SCORERS)))
        scorer = _SCORERS[target] = FragmentationScorer(target, mode="fill+fgd")
    return scorer


def _refit_work(state: PackingState) -> list[str]:
    """The workloads to place again, in arrival order: GPU work, and CPU-only work this cycle
    put on GPU nodes (allowed with cpu_on_gpu_nodes): its cores and memory can strand a GPU
    node's GPUs as surely."""
    n_gpus = state.cluster.n_gpus
    return [
        w.id
        for w in state.problem.workloads
        if w.id in state
        and (
            state.specs[w.id].resources.wants_gpu
            or any(n_gpus[node] > 0 for node, _ in state.slots(w.id))
        )
    ]


def _fits_slot(state: PackingState, wid: str, slot: Slot) -> bool:
    """Whether replica of ``wid`` fits ``slot`` (a node and the very GPUs) as the cluster is."""
    cluster = state.cluster
    node, gpus = slot
    r = state.specs[wid].resources
    share = GPU_MILLIS if r.gpus else r.gpu_millis
    return (
        cluster.free_cpu[node] >= r.cpu_millis
        and cluster.free_mem[node] >= r.memory_mib
        and all(cluster.gpu_free[node, g] >= share for g in gpus)
    )


def _place_by_score(state: PackingState, scorer: FragmentationScorer, wid: str, i: int) -> bool:
    """Put lifted replica ``i`` of ``wid`` on the node (and GPU) of its site where the
    fragmentation grows least: among the powered nodes, or where none has room, among the
    others (``fgd_wakes_nodes``: among all); False if no node of the site has room."""
    cluster = state.cluster
    r = state.specs[wid].resources
    site = cluster.site_of(state.slots(wid)[i][0])
    nodes = state.index.nodes(state.elig[wid].pools_by_site[site])
    nodes = state.with_room(wid, nodes[cluster.fit_mask(r, nodes)])
    if not len(nodes):
        return False
    growth, share_gpu = scorer.best_placement(cluster, nodes, r)
    # a powered node before waking one, whatever the fragmentation: waking a GPU node for
    # less fragmentation costs its idle power (1.5 kW) for as long as the replica runs, which
    # over a day cost more than the fragmentation saved (``valley bench day``)
    empty = cluster.replicas_on[nodes] == 0
    if state.params.fgd_wakes_nodes:  # fragmentation alone; a powered node where it ties
        k = int(np.argmin(growth + 1e-9 * empty)) if not r.wants_gpu else int(np.argmin(growth))
    else:
        k = int(np.lexsort((growth, empty))[0])
    target = int(nodes[k])
    state.put(wid, i, target, scorer.gpus_for(cluster, target, r, int(share_gpu[k])))
    return True


def refit(state: PackingState, scorer: FragmentationScorer, stop: Callable[[], bool]) -> bool:
    """Place this cycle's GPU work (and CPU-only work on GPU nodes) again by ``scorer``, replica
    by replica in arrival order, asking ``stop`` before each. Once it says stop, the replicas
    placed again so far keep their new places and the rest go back where they were (or, where
    a new place took theirs, by the same score). If a replica finds no room, the placement stays
    as it was. True if any replica was placed again."""
    refs: list[ReplicaRef] = []
    for wid in _refit_work(state):
        slots = state.slots(wid)
        refs += [(wid, i) for i in sorted(range(len(slots)), key=lambda i: slots[i])]
    with state.transaction() as tx:
        for wid, i in refs:
            state.lift(wid, i)
        done = 0
        for wid, i in refs:
            if stop():
                break
            if not _place_by_score(state, scorer, wid, i):
                tx.rollback()
                return False
            done += 1
        for wid, i in refs[done:]:
            old = state.slots(wid)[i]  # a lifted replica keeps its old slot until put
            if _fits_slot(state, wid, old) and state.room_for(wid, old[0]) > 0:
                state.put(wid, i, *old)
            elif not _place_by_score(state, scorer, wid, i):
                tx.rollback()
                return False
    return done > 0


class FgdRefit:
    """``refit`` for the problem's target workload (the GPU requests to expect), within the
    budget and its grace. Sites stay as decided, so SLOs, GANG and SPREAD hold. On a loaded
    machine a cycle keeps the part of the refit it could pay for instead of none."""

    name: ClassVar[str] = "fgd-refit"

    def supports(self, state: PackingState) -> bool:
        return bool(state.problem.gpu_target) and bool(_refit_work(state))

    def apply(self, state: PackingState, budget: TimeBudget) -> bool:
        if budget.expired(grace=True):
            return False
        scorer = _scorer(state.problem.gpu_target)
        return refit(state, scorer, lambda: budget.expired(grace=True))
