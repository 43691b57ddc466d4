"""Valley's bound on pools its work overfills: never above the best node-level placement, found
here by trying every one on instances small enough to enumerate."""

from __future__ import annotations

import itertools
import random

from scheduler.domain import (
    CapacityError,
    ReplicaPlacement,
    Resources,
    WorkloadKind,
    WorkloadSpec,
    parse_scenario,
)
from scheduler.solver import SolverParams, solve
from scheduler.solver.objective import evaluate
from tests.test_solver import problem
from tests.test_spread_packing import ONE_POOL

THREE_NODES = ONE_POOL.replace("count = 2", "count = 3")


def _best_placement_objective(p, params):
    """The least objective over every way to put each replica on a node or leave its workload
    out (a workload with a replica left out is left out whole)."""
    nodes = p.cluster.node_names
    replicas = [(w.id, i) for w in p.workloads for i in range(w.spec.replica_count)]
    best = None
    for choice in itertools.product(range(len(nodes) + 1), repeat=len(replicas)):
        out = {wid for (wid, _), c in zip(replicas, choice, strict=True) if c == len(nodes)}
        placements: dict[str, list[ReplicaPlacement]] = {}
        for (wid, i), c in zip(replicas, choice, strict=True):
            if wid not in out:
                placements.setdefault(wid, []).append(ReplicaPlacement(i, "near", nodes[c]))
        try:
            value = evaluate(p, {w: tuple(r) for w, r in placements.items()}, params).objective
        except CapacityError:
            continue
        best = value if best is None else min(best, value)
    return best


def test_the_bound_is_never_above_the_best_placement_when_the_work_overfills_the_pool():
    scenario = parse_scenario(THREE_NODES, "three.toml")
    rng = random.Random(3)
    params = SolverParams(policy="valley", time_limit_s=2.0)
    for _ in range(3):
        # five replicas, 105-125% of the pool's 12 cores: something is left out, and what
        # fits depends on how the replicas share nodes (cores on one, memory on another)
        specs = [
            WorkloadSpec(
                tenant="t",
                resources=Resources(rng.choice([1500, 2500, 3000, 3500]), rng.choice([2048, 5000])),
                replicas=n,
                kind=WorkloadKind.BATCH,
                priority=rng.choice([0, 10]),
            )
            for n in (2, 1, 1, 1)
        ]
        p = problem(scenario, *specs)
        best = _best_placement_objective(p, params)
        result = solve(p, params)
        assert result.bound is not None
        assert result.bound <= best + 1e-6
        assert result.objective >= best - 1e-6


def test_the_bound_counts_the_replicas_no_node_holds_when_larger_ones_fill_the_nodes():
    # three 4-core nodes, 14.5 cores asked: the pool's totals have room for all but one
    # 2.5-core replica, yet every replica is at least as large as 2.5 cores and a node holds
    # one of them at most, so two are left out. The bound counted one (101 CNY/h against
    # 201); the cut over the replicas at least as large counts both
    scenario = parse_scenario(THREE_NODES, "three.toml")
    params = SolverParams(policy="valley", time_limit_s=2.0)

    def batch(cpu: int, mem: int, replicas: int = 1) -> WorkloadSpec:
        return WorkloadSpec(
            tenant="t", resources=Resources(cpu, mem), replicas=replicas, kind=WorkloadKind.BATCH
        )

    p = problem(
        scenario, batch(2500, 2048, 2), batch(3500, 2048), batch(3500, 5000), batch(2500, 5000)
    )
    best = _best_placement_objective(p, params)
    result = solve(p, params)
    assert result.bound is not None
    assert best - 1e-6 <= result.bound <= best + 1e-6
