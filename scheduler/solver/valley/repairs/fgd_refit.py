"""Place this cycle's GPU work again where it fragments the GPUs least (FGD)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from scheduler.solver.budget import TimeBudget
from scheduler.solver.fragmentation import FragmentationScorer, RequestType
from scheduler.solver.valley.state import PackingState

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


class FgdRefit:
    """Replica by replica in arrival order, each on the node (and GPU) of its site where the
    expected fragmentation of the GPUs grows least, for the problem's target workload (the GPU
    requests to expect). Sites stay as decided, so SLOs, GANG and SPREAD hold. If any replica
    finds no room, or the budget (with its grace) runs out, the placement stays as it was."""

    name: ClassVar[str] = "fgd-refit"

    def supports(self, state: PackingState) -> bool:
        return bool(state.problem.gpu_target) and bool(_refit_work(state))

    def apply(self, state: PackingState, budget: TimeBudget) -> bool:
        cluster = state.cluster
        work = _refit_work(state)
        scorer = _scorer(state.problem.gpu_target)
        with state.transaction() as tx:
            for wid in work:
                for i in range(len(state.slots(wid))):
                    state.lift(wid, i)
            for wid in work:
                r = state.specs[wid].resources
                slots = state.slots(wid)
                for i in sorted(range(len(slots)), key=lambda i: slots[i]):  # node order
                    if budget.expired(grace=True):
                        tx.rollback()
                        return False
                    site = cluster.site_of(slots[i][0])
                    nodes = state.index.nodes(state.elig[wid].pools_by_site[site])
                    nodes = nodes[cluster.fit_mask(r, nodes)]
                    if not len(nodes):
                        tx.rollback()
                        return False
                    growth, share_gpu = scorer.best_placement(cluster, nodes, r)
                    if not r.wants_gpu:
                        # where fragmentation does not decide, a powered node before waking one
                        growth = growth + 1e-9 * (cluster.replicas_on[nodes] == 0)
                    k = int(np.argmin(growth))
                    target = int(nodes[k])
                    state.put(
                        wid, i, target, scorer.gpus_for(cluster, target, r, int(share_gpu[k]))
                    )
        return True
