"""The repairs of a packing, behind one protocol (PyVRP's operators are the model: each says
whether it applies to the state and applies itself).

Each repair changes the placement only through ``PackingState`` and runs in a transaction of
its own: one that raises is rolled back and reported, never allowed to break the solve. Which
repairs run, and in what order, comes from ``SolverParams.repairs``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import ClassVar, Protocol

from scheduler.solver.budget import TimeBudget
from scheduler.solver.problem import REPAIRS
from scheduler.solver.valley.repairs.consolidate import Consolidate
from scheduler.solver.valley.repairs.displace import Displace
from scheduler.solver.valley.repairs.fgd_refit import FgdRefit
from scheduler.solver.valley.repairs.gpu_repack import GpuRepack
from scheduler.solver.valley.repairs.leftovers import Leftovers
from scheduler.solver.valley.repairs.make_room import MakeRoom
from scheduler.solver.valley.state import PackingState

log = logging.getLogger(__name__)


class Repair(Protocol):
    name: ClassVar[str]

    def supports(self, state: PackingState) -> bool:
        """Whether there is anything for this repair to do in ``state``."""
        ...

    def apply(self, state: PackingState, budget: TimeBudget) -> bool:
        """Improve ``state`` in place within ``budget`` (its grace included); True if the
        placement changed. Everything it does keeps every hard rule."""
        ...


def _registry(*repairs: type[Repair]) -> dict[str, type[Repair]]:
    out: dict[str, type[Repair]] = {}
    for r in repairs:
        if r.name in out:
            raise ValueError(f"repair {r.name!r} registered twice")
        out[r.name] = r
    if tuple(out) != REPAIRS:
        raise ValueError(f"repairs {tuple(out)} differ from SolverParams' {REPAIRS}")
    return out


REGISTRY: Mapping[str, type[Repair]] = _registry(
    Consolidate, GpuRepack, Leftovers, MakeRoom, Displace, FgdRefit
)


def run_repairs(
    state: PackingState, names: tuple[str, ...], budget: TimeBudget
) -> tuple[list[str], list[str]]:
    """Run the named repairs in order; returns (those that changed the placement, those that
    failed and were rolled back)."""
    applied: list[str] = []
    failed: list[str] = []
    for name in names:
        repair = REGISTRY[name]()
        if not repair.supports(state):
            continue
        try:
            with state.transaction():
                changed = repair.apply(state, budget)
        except Exception:
            log.exception("the %s repair failed; its changes are rolled back", name)
            failed.append(name)
            continue
        if changed:
            applied.append(name)
    return applied, failed


__all__ = ["REGISTRY", "Repair", "run_repairs"]
