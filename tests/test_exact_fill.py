"""Filling a node's CPU exactly (``exact_fill``) and packing a pool the model fills to its last
cores: every replica the decision asks for finds a node when a packing of them exists."""

from __future__ import annotations

import itertools
import random

from scheduler.domain import Resources, WorkloadKind, WorkloadSpec, parse_scenario
from scheduler.solver.valley.exact_fill import best_fill
from tests.test_solver import packed_on_one_pool
from tests.test_spread_packing import ONE_POOL


def _brute_force(free_cpu, free_mem, cpu, mem, most):
    """(most CPU, least memory at that CPU) over every choice of counts."""
    best = (0, 0)
    for counts in itertools.product(*(range(m + 1) for m in most)):
        c = sum(k * x for k, x in zip(counts, cpu, strict=True))
        m = sum(k * x for k, x in zip(counts, mem, strict=True))
        if c <= free_cpu and m <= free_mem and (c > best[0] or (c == best[0] and m < best[1])):
            best = (c, m)
    return best


def _used(take, cpu, mem):
    return (
        sum(k * x for k, x in zip(take, cpu, strict=True)),
        sum(k * x for k, x in zip(take, mem, strict=True)),
    )


def _random_node(rng):
    """Free CPU and memory of a node, and up to 4 shapes (CPU, memory, how many there are)."""
    n = rng.randint(1, 4)
    cpu = [rng.choice([250, 500, 750, 1000, 1500, 2050]) for _ in range(n)]
    mem = [rng.randint(1, 8) * 512 for _ in range(n)]
    most = [rng.randint(0, 4) for _ in range(n)]
    free_cpu, free_mem = rng.randint(0, 8000), rng.randint(0, 16384)
    return free_cpu, free_mem, cpu, mem, most


def test_best_fill_fills_the_most_cpu_with_the_least_memory_when_compared_with_every_choice():
    rng = random.Random(7)
    for _ in range(200):
        free_cpu, free_mem, cpu, mem, most = _random_node(rng)
        take = best_fill(free_cpu, free_mem, cpu, mem, most)
        assert all(0 <= k <= m for k, m in zip(take, most, strict=True))
        assert _used(take, cpu, mem) == _brute_force(free_cpu, free_mem, cpu, mem, most)


def test_best_fill_near_a_memory_ratio_never_overfills_the_node():
    rng = random.Random(11)
    for _ in range(200):
        free_cpu, free_mem, cpu, mem, most = _random_node(rng)
        take = best_fill(free_cpu, free_mem, cpu, mem, most, ratio=rng.uniform(0.5, 4.0))
        used_cpu, used_mem = _used(take, cpu, mem)
        assert all(0 <= k <= m for k, m in zip(take, most, strict=True))
        assert used_cpu <= free_cpu and used_mem <= free_mem


def test_a_full_pool_places_every_replica_when_only_an_exact_fill_holds_them():
    # three 4-core nodes, 12 cores asked in eight replicas: only 2 + 2, 2 + 1.25 + 0.75 and
    # 1.5 + 1.5 + 1 hold them all; the greedy fill stranded cores and left one replica out
    scenario = parse_scenario(ONE_POOL.replace("count = 2", "count = 3"), "three.toml")
    cores = [750, 2000, 1500, 1250, 2000, 1500, 1000, 2000]
    specs = [
        WorkloadSpec(tenant="t", resources=Resources(c, 1024), kind=WorkloadKind.BATCH)
        for c in cores
    ]
    placed = packed_on_one_pool(scenario, "near/cpu", 3, *specs)
    assert len(placed) == len(specs)
