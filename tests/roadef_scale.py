"""Scaled-up ROADEF 2012 instances: more machines, the same processes and services.

The challenge's set B lacks the model files of ``b_07`` (4,000 machines) and ``b_10`` (5,000
machines) and set X has instances of those sizes; this makes instances of that size from the
ones we have, to check that reading, solving and evaluating keep a time limit there.

Each machine of the source becomes ``factor`` machines in its neighbourhood and location, its
processes dealt among them at random (by ``seed``), the machine order shuffled. A copy's
capacity is the source's divided by ``factor``, raised to what its processes use (so the
initial assignment keeps every capacity); its safety capacity is the source's divided by
``factor``, at most its capacity (so overloads carry over). The move cost between copies is
the one between their sources (0 between copies of one machine). Services, dependencies,
processes, balance costs and weights are the source's. Every hard rule of the source's initial
assignment still holds: processes keep their location and neighbourhood (spread, dependency),
a service's processes were on distinct machines and stay so (conflict), nothing has moved
(transient usage).

    python -m tests.roadef_scale SOURCE_MODEL FACTOR OUT_DIR [--seed N] [--name NAME]

writes ``OUT_DIR/model_NAME.txt`` and ``OUT_DIR/assignment_NAME.txt`` (default name:
``SOURCE_xFACTOR``).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from scheduler.solver.reassign import (
    Instance,
    assignment_path,
    read_assignment,
    read_model,
    write_assignment,
    write_model,
)
from scheduler.solver.reassign.model import IntArray


def scale(
    inst: Instance, initial: IntArray, factor: int, seed: int = 0, name: str | None = None
) -> tuple[Instance, IntArray]:
    """``inst`` with each machine split into ``factor`` machines, and the initial assignment
    on them (module docstring)."""
    if factor < 1:
        raise ValueError("factor >= 1")
    rng = np.random.default_rng(seed)
    n_new = inst.machines * factor
    perm = rng.permutation(n_new)  # new index of copy c (source c // factor)
    source = np.empty(n_new, dtype=np.int64)
    source[perm] = np.arange(n_new) // factor
    # deal each machine's processes among its copies: a random rank within the machine
    order = np.lexsort((rng.random(inst.processes), initial))
    rank = np.empty(inst.processes, dtype=np.int64)
    starts = np.searchsorted(initial[order], initial[order])
    rank[order] = np.arange(inst.processes) - starts
    copy = initial * factor + (rank + rng.integers(factor, size=inst.processes)) % factor
    assignment = perm[copy]
    usage = np.zeros((n_new, inst.resources), dtype=np.int64)
    np.add.at(usage, assignment, inst.requirement)
    capacity = np.maximum(-(-inst.capacity[source] // factor), usage)
    safety = np.minimum(-(-inst.safety[source] // factor), capacity)
    scaled = replace(
        inst,
        name=name or f"{inst.name}_x{factor}",
        neighborhood=inst.neighborhood[source],
        location=inst.location[source],
        capacity=capacity,
        safety=safety,
        machine_move_cost=inst.machine_move_cost[np.ix_(source, source)],
    )
    return scaled, assignment


def write_scaled(
    model: str | Path, factor: int, out_dir: str | Path, seed: int = 0, name: str | None = None
) -> Path:
    """Scale the instance of ``model`` (its assignment beside it) and write the model and
    assignment files into ``out_dir``; the model file's path."""
    inst = read_model(model)
    initial = read_assignment(assignment_path(model), inst)
    scaled, assignment = scale(inst, initial, factor, seed, name)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"model_{scaled.name}.txt"
    write_model(path, scaled)
    write_assignment(out / f"assignment_{scaled.name}.txt", assignment)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("factor", type=int)
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default=None)
    args = parser.parse_args()
    print(write_scaled(args.model, args.factor, args.out_dir, args.seed, args.name))


if __name__ == "__main__":
    main()
