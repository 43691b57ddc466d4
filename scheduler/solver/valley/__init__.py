"""Valley's optimizer: an aggregated model, bounded by a relaxation, packed onto nodes,
repaired, and improved with CP-SAT (the phases: ``pipeline``).

Modules, one concern each: ``linear`` (a solver-neutral linear model and its relaxations),
``model`` (classes of workloads x pools of nodes), ``rounding`` (the LP's solution to whole
workloads), ``bound`` (the MIP bound in a background thread), ``packing`` (counts onto nodes),
``state`` (the node-level placement with transactions), ``repairs`` (one module per repair,
behind one protocol), ``search`` (CP-SAT), ``pipeline`` (the order they run in).

Money is in CNY per hour everywhere. Only modules of the solver package import OR-Tools.
"""

from scheduler.solver.valley.pipeline import solve_valley

__all__ = ["solve_valley"]
