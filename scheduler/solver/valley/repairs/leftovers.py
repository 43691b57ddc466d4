"""Place the workloads that the model left out or packing could not fit, one at a time."""

from __future__ import annotations

from typing import ClassVar

from scheduler.solver import greedy
from scheduler.solver.budget import TimeBudget
from scheduler.solver.objective import cheapest_site_order
from scheduler.solver.valley.state import PackingState


def place_greedily(state: PackingState) -> bool:
    """Higher priority first, cheapest site first, powered nodes first, best fit within a site
    (also the whole answer when there is no time to solve)."""
    problem = state.problem
    order = cheapest_site_order(problem, state.params)
    scorer = greedy.site_ranked(
        order, state.cluster.site_names, greedy.awake_first(greedy.best_fit)
    )
    changed = False
    for w in sorted(state.open_workloads(), key=lambda w: -w.spec.priority):
        slots = greedy.place_slots(
            state.cluster, state.index, w.spec, state.elig[w.id], scorer, order
        )
        if slots is not None:
            state.place(w.id, slots)
            changed = True
    return changed


class Leftovers:
    """``place_greedily`` for what is still open after packing."""

    name: ClassVar[str] = "leftovers"

    def supports(self, state: PackingState) -> bool:
        return bool(state.open_workloads())

    def apply(self, state: PackingState, budget: TimeBudget) -> bool:
        return place_greedily(state)
