"""Packing one pool of CPU nodes, compiled (numba): ``packing.pack_pool`` for a pool without
GPUs, step for step, on arrays.

At 50k replicas the pools of CPU nodes take 2,400 node visits of a dozen steps each (a shape
chosen, a node's CPU filled exactly, its slots handed to the workloads within their per-node
limits): 1.8 s in Python, most of it the overhead of small numpy calls. Here the same steps run
over plain arrays: the greedy choice (``_PoolPacker.choose``), the exact fill (``best_fill``,
the same dynamic program) and the hand-out to the workloads (``_Takers.hand_out``, their queue
as a ring buffer per shape). Floating-point sums are written out in the order the Python code
computes them, so both choose the same shapes: ``tests/test_pool_kernel.py`` checks that they
pack random pools identically.

The kernel changes only its own copies of the free CPU and memory; it returns what it placed,
per node and shape (for ``Cluster.allocate_many``), and what each workload got, per node.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from scheduler.solver.jit import jit
from scheduler.solver.valley.exact_fill import MAX_STATES

_NONE = np.iinfo(np.int64).max // 4  # exact_fill's unreachable state


@jit
def fill_exactly(
    free_cpu: int,
    free_mem: int,
    cpu: Any,
    mem: Any,
    most: Any,
    ratio: float,
    has_ratio: bool,
    take: Any,
) -> None:
    """``exact_fill.best_fill`` into ``take`` (a ratio only with ``has_ratio``)."""
    n = len(most)
    take[:] = 0
    unit = 0
    bundles = 0
    for i in range(n):
        if most[i] > 0 and 0 < cpu[i] <= free_cpu and mem[i] <= free_mem:
            unit = math.gcd(unit, cpu[i])
    if unit == 0 or free_cpu <= 0:
        return
    unit = max(unit, -(-free_cpu // MAX_STATES))
    states = free_cpu // unit
    # the bundles of 1, 2, 4, ... replicas each shape splits into, counted first
    for i in range(n):
        if most[i] > 0 and 0 < cpu[i] <= free_cpu and mem[i] <= free_mem:
            c = -(-cpu[i] // unit)
            left = min(most[i], states // c, free_mem // max(mem[i], 1))
            size = 1
            while left > 0:
                size = min(size, left)
                left -= size
                bundles += 1
                size *= 2
    table = np.full(states + 1, _NONE, dtype=np.int64)
    table[0] = 0
    target = np.zeros(states + 1, dtype=np.int64)
    if has_ratio:
        step = ratio * unit
        for s in range(states + 1):
            target[s] = min(int(step * s), free_mem)
    miss = np.abs(table - target)
    better = np.zeros((bundles, states + 1), dtype=np.bool_)
    b_shape = np.empty(bundles, dtype=np.int64)
    b_size = np.empty(bundles, dtype=np.int64)
    b_dc = np.empty(bundles, dtype=np.int64)
    b = 0
    for i in range(n):
        if not (most[i] > 0 and 0 < cpu[i] <= free_cpu and mem[i] <= free_mem):
            continue
        c = -(-cpu[i] // unit)
        m = mem[i]
        left = min(most[i], states // c, free_mem // max(m, 1))
        size = 1
        while left > 0:
            size = min(size, left)
            left -= size
            dc, dm = size * c, size * m
            # downwards: table[s - dc] is still the table before this bundle (a 0/1 choice)
            for s in range(states, dc - 1, -1):
                new = table[s - dc] + dm
                new_miss = abs(new - target[s])
                if new_miss < miss[s]:
                    table[s] = new
                    miss[s] = new_miss
                    better[b, s - dc] = True
            b_shape[b], b_size[b], b_dc[b] = i, size, dc
            b += 1
            size *= 2
    s = 0
    for k in range(states, -1, -1):
        if table[k] <= free_mem:
            s = k
            break
    for k in range(bundles - 1, -1, -1):
        dc = b_dc[k]
        if s >= dc and better[k, s - dc]:
            take[b_shape[k]] += b_size[k]
            s -= dc


@jit
def _reweigh(remaining: Any, weight: Any, base: Any, size: Any, norm_sq: Any) -> None:
    """``_PoolPacker._reweigh``: the demand left per dimension, as weights, and each shape's
    score without the node's free vector."""
    total = max(remaining[0] + remaining[1] + remaining[2], 1e-12)
    for k in range(3):
        weight[k] = remaining[k] / total
    for t in range(len(base)):
        base[t] = 1e-9 * size[t] - (
            norm_sq[t, 0] * weight[0] + norm_sq[t, 1] * weight[1] + norm_sq[t, 2] * weight[2]
        )


@jit
def _choose(
    fc: int,
    fm: int,
    cap_cpu: int,
    cap_mem: int,
    d_cpu: Any,
    d_mem: Any,
    room: Any,
    base: Any,
    norm: Any,
    weight: Any,
    first: Any,
    use_first: bool,
) -> int:
    """``_PoolPacker.choose`` on a node with ``fc`` millicores and ``fm`` MiB free."""
    n = len(base)
    only_first = False
    if use_first:
        for t in range(n):
            if first[t] and room[t] > 0 and d_cpu[t] <= fc and d_mem[t] <= fm:
                only_first = True
                break
    s_cpu = 2.0 * fc / cap_cpu * weight[0]
    s_mem = 2.0 * fm / cap_mem * weight[1]
    best = -1
    best_score = -np.inf
    for t in range(n):
        if room[t] <= 0 or d_cpu[t] > fc or d_mem[t] > fm or (only_first and not first[t]):
            continue
        score = base[t] + norm[t, 0] * s_cpu
        score = score + norm[t, 1] * s_mem
        if best < 0 or score > best_score:
            best, best_score = t, score
    return best


@jit
def _take(
    node: int,
    t: int,
    k: int,
    free_cpu: Any,
    free_mem: Any,
    d_cpu: Any,
    d_mem: Any,
    here: Any,
    touched: Any,
    n_touched: int,
    left: Any,
    room: Any,
    remaining: Any,
    norm: Any,
    weight: Any,
    base: Any,
    size: Any,
    norm_sq: Any,
) -> int:
    """Node ``node`` takes ``k`` replicas of shape ``t``: its free room, the shape's count on
    it (``touched`` lists the shapes it took, in order), what is left to pack and the weights
    of what remains; the new count of ``touched``."""
    free_cpu[node] -= k * d_cpu[t]
    free_mem[node] -= k * d_mem[t]
    if here[t] == 0:
        touched[n_touched] = t
        n_touched += 1
    here[t] += k
    left[t] -= k
    room[t] -= k
    for d in range(3):
        remaining[d] -= k * norm[t, d]
    _reweigh(remaining, weight, base, size, norm_sq)
    return n_touched


@jit
def pack_cpu_pool(
    order: Any,
    free_cpu: Any,
    free_mem: Any,
    cap_cpu: int,
    cap_mem: int,
    d_cpu: Any,
    d_mem: Any,
    norm: Any,
    size: Any,
    left: Any,
    room: Any,
    need: Any,
    limited: Any,
    w_start: Any,
    w_rem: Any,
    w_limit: Any,
    w_spread: Any,
    tk_room: Any,
    exact_below: int,
) -> tuple[Any, Any, Any]:
    """``packing.pack_pool`` for a pool of CPU nodes. ``order``: the nodes in visiting order;
    ``free_cpu``/``free_mem``: per node of the cluster (changed in place). Per shape: its
    demand, ``norm`` (demand / node capacity, 3 columns), ``size``, ``left``, ``room``,
    ``need``, ``limited``; its workloads are ``w_start[t]:w_start[t + 1]`` of the ``w_*``
    arrays (in the order they take slots), ``tk_room`` their ``_Takers.room``.

    Returns the placements ((node, shape, count) rows), the hand-out ((workload, node, count)
    rows, in the order given) and the workloads' replicas left without a slot (``w_rem``)."""
    n = len(d_cpu)
    total = 0
    for t in range(n):
        total += left[t]
    placed = np.empty((total + 1, 3), dtype=np.int64)
    handed = np.empty((total + 1, 3), dtype=np.int64)
    n_placed = 0
    n_handed = 0
    if len(order) == 0 or total == 0:
        return placed[:0], handed[:0], w_rem
    norm_sq = norm * norm
    remaining = np.zeros(3)
    for k in range(3):
        for t in range(n):
            remaining[k] += norm[t, k] * left[t]
    weight = np.zeros(3)
    base = np.zeros(n)
    _reweigh(remaining, weight, base, size, norm_sq)
    # the workloads' queues, one ring buffer per shape (``_Takers._queue``)
    queue = np.empty(len(w_rem), dtype=np.int64)
    head = np.zeros(n, dtype=np.int64)
    length = np.zeros(n, dtype=np.int64)
    for t in range(n):
        for j in range(w_start[t], w_start[t + 1]):
            if w_rem[j] > 0:
                queue[w_start[t] + length[t]] = j
                length[t] += 1
    here = np.zeros(n, dtype=np.int64)  # per shape, how many the node being packed took
    touched = np.empty(n, dtype=np.int64)  # the shapes it took, in the order it took them
    urgent = np.zeros(n, dtype=np.bool_)
    most = np.zeros(n, dtype=np.int64)
    take = np.zeros(n, dtype=np.int64)
    last_take = np.zeros(n, dtype=np.int64)
    last_cpu, last_mem = -1, -1
    widest = 0
    for t in range(n):
        widest = max(widest, w_start[t + 1] - w_start[t])
    keep = np.empty(widest, dtype=np.int64)
    spread = np.empty(widest, dtype=np.int64)
    visits = len(order)
    for jn in range(visits):
        node = order[jn]
        n_touched = 0
        any_urgent = False
        for t in range(n):
            urgent[t] = need[t] >= visits - jn and left[t] > 0
            any_urgent = any_urgent or urgent[t]
        # the urgent shapes first, as far as they fit; then greedily down to ``exact_below``
        # free, the exact fill, and what still fits (``pack_pool``'s three passes)
        for phase in range(4):
            if phase == 0 and not any_urgent:
                continue
            if phase == 2:
                fc, fm = free_cpu[node], free_mem[node]
                for t in range(n):
                    most[t] = min(left[t], room[t])
                same = fc == last_cpu and fm == last_mem
                if same:
                    for t in range(n):
                        if last_take[t] > most[t]:
                            same = False
                            break
                if same:
                    take[:] = last_take
                else:
                    cpu_left = 0
                    mem_left = 0
                    for t in range(n):
                        cpu_left += most[t] * d_cpu[t]
                        mem_left += most[t] * d_mem[t]
                    ratio = mem_left / cpu_left if cpu_left else 0.0
                    fill_exactly(fc, fm, d_cpu, d_mem, most, ratio, cpu_left != 0, take)
                last_cpu, last_mem = fc, fm
                last_take[:] = take
                for t in range(n):
                    if take[t]:
                        n_touched = _take(
                            node, t, take[t], free_cpu, free_mem, d_cpu, d_mem, here, touched,
                            n_touched, left, room, remaining, norm, weight, base, size, norm_sq,
                        )  # fmt: skip
                continue
            stop_at = exact_below if phase == 1 else -1
            while True:
                fc, fm = free_cpu[node], free_mem[node]
                t = _choose(
                    fc, fm, cap_cpu, cap_mem, d_cpu, d_mem, room, base, norm, weight,
                    urgent, phase == 0,
                )  # fmt: skip
                if t < 0 or (phase == 0 and not urgent[t]) or fc <= stop_at:
                    break
                fits = min(fc // max(d_cpu[t], 1), fm // max(d_mem[t], 1))
                k = max(1, min(left[t], room[t], fits // 2))
                n_touched = _take(
                    node, t, k, free_cpu, free_mem, d_cpu, d_mem, here, touched, n_touched,
                    left, room, remaining, norm, weight, base, size, norm_sq,
                )  # fmt: skip
        for i in range(n_touched):
            t = touched[i]
            slots = here[t]
            here[t] = 0
            placed[n_placed, 0], placed[n_placed, 1], placed[n_placed, 2] = node, t, slots
            n_placed += 1
            # ``_Takers.hand_out``: in queue order, a spreading service one slot, others up
            # to their limit; then the services served take more, within the limit
            a, width = w_start[t], w_start[t + 1] - w_start[t]
            pos = 0
            n_keep = n_spread = 0
            while pos < slots and length[t] > 0:
                j = queue[a + head[t]]
                head[t] = (head[t] + 1) % width
                length[t] -= 1
                give = min(1 if w_spread[j] else w_limit[j], w_rem[j], slots - pos)
                before = min(w_limit[j], w_rem[j])
                w_rem[j] -= give
                tk_room[t] -= before - min(w_limit[j], w_rem[j])
                handed[n_handed, 0], handed[n_handed, 1], handed[n_handed, 2] = j, node, give
                n_handed += 1
                pos += give
                if w_spread[j]:
                    spread[n_spread] = j
                    n_spread += 1
                else:
                    keep[n_keep] = j
                    n_keep += 1
            for s in range(n_spread):
                j = spread[s]
                give = min(w_limit[j] - 1, w_rem[j], slots - pos)
                if give > 0:
                    before = min(w_limit[j], w_rem[j])
                    w_rem[j] -= give
                    tk_room[t] -= before - min(w_limit[j], w_rem[j])
                    handed[n_handed, 0], handed[n_handed, 1] = j, node
                    handed[n_handed, 2] = give
                    n_handed += 1
                    pos += give
            # those that kept their turn back at the front, the services served at the end
            for s in range(n_keep - 1, -1, -1):
                j = keep[s]
                if w_rem[j]:
                    head[t] = (head[t] - 1) % width
                    queue[a + head[t]] = j
                    length[t] += 1
            for s in range(n_spread):
                j = spread[s]
                if w_rem[j]:
                    queue[a + (head[t] + length[t]) % width] = j
                    length[t] += 1
            if limited[t]:
                room[t] = tk_room[t]
                most_nodes = 0
                for j in range(a, a + width):
                    if w_rem[j] > 0:
                        most_nodes = max(most_nodes, -(-w_rem[j] // w_limit[j]))
                need[t] = most_nodes
        done = True
        for t in range(n):
            if left[t]:
                done = False
                break
        if done:
            break
    return placed[:n_placed], handed[:n_handed], w_rem


def warm_up() -> None:
    """Compile the kernel (or load it from numba's cache) on a two-node pool: the first call
    in a process costs about a second even from the cache (numba's start-up), tens of seconds
    without one, and a solve's time limit must not pay for it."""
    i64 = np.int64
    d_cpu = np.array([1000, 500], dtype=i64)
    d_mem = np.array([1024, 4096], dtype=i64)
    norm = np.stack([d_cpu / 4000, d_mem / 8192, np.zeros(2)], axis=1)
    pack_cpu_pool(
        np.array([0, 1], dtype=i64),
        np.array([4000, 4000], dtype=i64),
        np.array([8192, 8192], dtype=i64),
        4000,
        8192,
        d_cpu,
        d_mem,
        norm,
        norm.max(axis=1),
        np.array([3, 2], dtype=i64),
        np.array([2, 2], dtype=i64),
        np.array([2, 0], dtype=i64),
        np.array([True, False]),
        np.array([0, 1, 2], dtype=i64),
        np.array([3, 2], dtype=i64),
        np.array([2, 2], dtype=i64),
        np.array([True, False]),
        np.array([2, 2], dtype=i64),
        4000,
    )


warm_up()
