"""Consolidation: pack items (vectors) into the fewest identical bins (nodes).

Every node is the same and the question is how few of them can hold the work, which is what
lets idle servers power down. ``min_bins`` (``solve``) combines

1. lower bounds (``bounds``): the sum per dimension, the Martello–Toth L2 bound per dimension
   and a clique of items no two of which share a bin;
2. strong greedies for an upper bound (``greedy``): first-fit and best-fit decreasing by
   several size measures and bin-centric "fill one bin with the best-aligned item" rules;
3. searches while the bound is not met, each with a share of the work left (``work``:
   deterministic units of about a second of one core, so that the load on the machine does
   not change the packing; the wall-clock limit stays as a cap): an exact cover by triples
   when every bin must be filled exactly (the Triplet instances, CP-SAT) and the full
   assignment model with symmetry breaking for small instances (CP-SAT; both ``exact``);
   column generation (``cg_search``): the set-covering LP over bin patterns (GLOP,
   ``colgen``), priced by greedy fills, best triples through a seed item and swaps, then by an
   exact multi-dimensional knapsack (CP-SAT) whose bound gives Farley's lower bound
   (``pricing``), followed by dives that fix the columns the LP chooses and price again over
   the items left; and a tabu search (``tabu``) that empties two light bins and swaps items
   back until what is left out fits into one bin.

Every search stops as soon as the packing meets a proven lower bound. Column generation also
stops the whole search when its LP, solved as far as the pricing can tell, rounds up to the
bins found (the last searches cannot beat the LP; not a proof, so ``optimal`` stays False).

Sizes are integers and may be negative in some dimension (some published instances have them):
the bounds that would be wrong then (cliques, L2) are skipped.
"""

from __future__ import annotations

from scheduler.solver.binpack.bounds import lower_bound
from scheduler.solver.binpack.greedy import SIZE_MEASURES, first_fit_decreasing, greedy_pack
from scheduler.solver.binpack.packing import BinPackResult, check_packing
from scheduler.solver.binpack.solve import min_bins

__all__ = [
    "SIZE_MEASURES",
    "BinPackResult",
    "check_packing",
    "first_fit_decreasing",
    "greedy_pack",
    "lower_bound",
    "min_bins",
]
