"""The compiled packing of a pool of CPU nodes (``pool_kernel``) against the Python one it
replaces (``packing.pack_pool``): the same replicas on the same nodes, handed to the same
workloads, on random pools; and its exact fill against ``exact_fill.best_fill``."""

from __future__ import annotations

import random

import numpy as np

from scheduler.domain import Cluster, Resources, WorkloadKind, WorkloadSpec, parse_scenario
from scheduler.solver.valley.exact_fill import best_fill
from scheduler.solver.valley.packing import _Takers, pack_cpu_pool, pack_pool
from scheduler.solver.valley.pool_kernel import fill_exactly
from tests.test_solver_repairs import state_of
from tests.test_spread_packing import ONE_POOL

SHAPES = [(250, 512), (500, 1024), (1000, 1024), (1000, 4096), (1500, 2048), (2000, 8192)]


def _random_pool(rng: random.Random):
    """A pool of 3-12 CPU nodes, some of them partly used, and 1-12 workloads of a few
    shapes (services limited per node, some with limits of their own)."""
    nodes = rng.randint(3, 12)
    toml = ONE_POOL.replace("count = 2", f"count = {nodes}")
    scenario = parse_scenario(toml.replace("cpu_millis = 4000", "cpu_millis = 8000"), "p.toml")
    cluster = Cluster(scenario)
    for node in range(nodes):
        for _ in range(rng.choice([0, 0, 1, 3])):
            cpu, mem = rng.choice(SHAPES)
            r = Resources(cpu, mem)
            if cluster.fits(node, r):
                cluster.allocate(node, r)
    specs = {}
    for i in range(rng.randint(1, 12)):
        kind = rng.choice([WorkloadKind.SERVICE, WorkloadKind.BATCH])
        specs[f"w{i}"] = WorkloadSpec(
            tenant="t",
            resources=Resources(*rng.choice(SHAPES[: rng.randint(2, len(SHAPES))])),
            replicas=rng.randint(1, 8),
            kind=kind,
            max_replicas_per_node=rng.choice([0, 0, 1, 2]),
        )
    return scenario, cluster, specs


def _packed(scenario, cluster, specs, spread: bool, exact: int, compiled: bool):
    """What one packing of every replica of ``specs`` into the pool hands out and leaves."""
    state = state_of(scenario, specs, cluster=cluster.copy())
    by_shape: dict[Resources, list[tuple[str, int]]] = {}
    for wid, spec in sorted(specs.items(), key=lambda kv: -kv[1].replica_count):
        by_shape.setdefault(spec.resources, []).append((wid, spec.replica_count))
    shapes = list(by_shape)
    takers = [_Takers(state, by_shape[r], spread) for r in shapes]
    nodes = np.arange(len(cluster), dtype=np.int64)
    if compiled:
        pack_cpu_pool(state.cluster, nodes, shapes, takers, exact)
    else:
        pack_pool(state.cluster, nodes, shapes, takers, exact)
    handed = [(wid, sorted(mine), left) for t in takers for wid, mine, left in t.handed()]
    c = state.cluster
    return handed, c.free_cpu.tolist(), c.free_mem.tolist(), c.replicas_on.tolist()


def test_the_compiled_packing_of_a_cpu_pool_places_what_the_python_one_places():
    rng = random.Random(5)
    for _ in range(300):
        scenario, cluster, specs = _random_pool(rng)
        spread = rng.random() < 0.5
        exact = rng.choice([8000, 4000, 2000, 500])
        python = _packed(scenario, cluster, specs, spread, exact, compiled=False)
        assert _packed(scenario, cluster, specs, spread, exact, compiled=True) == python


def test_the_compiled_exact_fill_chooses_what_best_fill_chooses():
    rng = random.Random(3)
    for _ in range(500):
        n = rng.randint(1, 8)
        cpu = np.array([rng.choice([0, 250, 500, 750, 1000, 1500, 2050]) for _ in range(n)])
        mem = np.array([rng.randint(0, 8) * 512 for _ in range(n)])
        most = np.array([rng.randint(0, 6) for _ in range(n)])
        free_cpu, free_mem = rng.randint(0, 64000), rng.randint(0, 65536)
        ratio = rng.choice([None, rng.uniform(0.2, 4.0)])
        take = np.zeros(n, dtype=np.int64)
        fill_exactly(
            free_cpu,
            free_mem,
            cpu.astype(np.int64),
            mem.astype(np.int64),
            most.astype(np.int64),
            ratio or 0.0,
            ratio is not None,
            take,
        )
        assert take.tolist() == best_fill(free_cpu, free_mem, cpu, mem, most, ratio)
