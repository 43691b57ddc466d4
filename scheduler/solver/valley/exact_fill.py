"""Filling a node's CPU exactly: a bounded knapsack over the shapes left.

In a pool the model fills to within a few cores of its capacity, a greedy fill strands a core
or two on every node and the last replicas find no room (at 10k replicas E-Town's CPU pool is
asked for 99.96% of its cores on some seeds). ``best_fill`` chooses how many of each shape a
node takes so that its CPU is filled as far as any choice can, its memory permitting; of the
choices that fill it as far, one whose memory is near ``ratio`` times its CPU (the memory per
core the work left asks for: a node that takes the memory-light replicas leaves the heavy
ones to nodes that cannot hold them).

A dynamic program over the free CPU in units of the shapes' common divisor: each shape's
count is split into bundles of 1, 2, 4, ... replicas (a bounded knapsack as a 0/1 one); the
table keeps per CPU sum one memory total that reaches it (the least, or without a ratio the
one nearest the ratio's target: a heuristic choice then, which may miss a memory-feasible
fill the least-memory table would find, never a fill that does not fit).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from scheduler.solver.greedy import IntArray

# the most states (CPU sums) the table holds: above it, the unit is coarsened (a fill then
# may stop short of a few millicores it could have used)
MAX_STATES = 2048
_NONE = np.iinfo(np.int64).max // 4


def best_fill(
    free_cpu: int,
    free_mem: int,
    cpu: Sequence[int] | IntArray,
    mem: Sequence[int] | IntArray,
    most: Sequence[int] | IntArray,
    ratio: float | None = None,
) -> list[int]:
    """How many of each shape (``cpu``, ``mem`` per replica; at most ``most`` of each) to put
    on a node with ``free_cpu`` and ``free_mem`` left: the most CPU used, then memory nearest
    ``ratio`` x CPU (without a ratio, the least memory). Shapes without CPU are never chosen
    (they do not fill CPU)."""
    n = len(most)
    take = [0] * n
    cand = [i for i in range(n) if most[i] > 0 and 0 < cpu[i] <= free_cpu and mem[i] <= free_mem]
    if not cand or free_cpu <= 0:
        return take
    unit = 0
    for i in cand:
        unit = math.gcd(unit, int(cpu[i]))
    unit = max(unit, -(-free_cpu // MAX_STATES))
    states = free_cpu // unit
    table = np.full(states + 1, _NONE, dtype=np.int64)
    table[0] = 0
    # each state's memory target, never above the node's free memory: a choice over it is then
    # never nearer its target than one within it (and the fills over it are dropped at the end)
    target = np.zeros(states + 1, dtype=np.int64)
    if ratio is not None:
        target = np.minimum((ratio * unit * np.arange(states + 1)).astype(np.int64), free_mem)
    miss = np.abs(table - target)  # how far each state's memory is from its target
    # bundles in the order added, with the states where taking each one improved the table
    bundles: list[tuple[int, int, int, np.ndarray]] = []
    for i in cand:
        c = -(-int(cpu[i]) // unit)  # rounded up: a coarse unit never overfills the node
        m = int(mem[i])
        left = min(int(most[i]), states // c, free_mem // max(m, 1))
        size = 1
        while left > 0:
            size = min(size, left)
            left -= size
            dc, dm = size * c, size * m
            new = table[: states + 1 - dc] + dm
            new_miss = np.abs(new - target[dc:])
            better = new_miss < miss[dc:]
            np.copyto(table[dc:], new, where=better)
            np.copyto(miss[dc:], new_miss, where=better)
            bundles.append((i, size, dc, better))
            size *= 2
    s = int(np.flatnonzero(table <= free_mem)[-1])
    for i, size, dc, better in reversed(bundles):
        if s >= dc and better[s - dc]:
            take[i] += size
            s -= dc
    return take
