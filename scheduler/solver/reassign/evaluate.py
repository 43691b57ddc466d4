"""An independent checker of machine-reassignment solutions, written from the specification.

It shares no code with the search (``search``, ``state``): it recomputes every quantity from the
instance and the two assignments, the way the challenge's ``solution_checker`` does, so that a
bug in the search's incremental bookkeeping cannot hide in its own verdict.

Hard constraints (section 1.2): capacity, conflict, spread, dependency, transient usage. Cost
(section 1.3): the weighted load, balance, process-move, service-move and machine-move costs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scheduler.solver.reassign.model import Instance, IntArray

CONSTRAINTS = ("capacity", "conflict", "spread", "dependency", "transient")


@dataclass(frozen=True)
class Violation:
    """One broken hard constraint: its kind (one of ``CONSTRAINTS``) and what breaks it."""

    kind: str
    detail: str


@dataclass(frozen=True)
class Evaluation:
    """The verdict on one assignment: its violations and its cost, term by term (weighted)."""

    violations: tuple[Violation, ...]
    load_cost: int
    balance_cost: int
    process_move_cost: int
    service_move_cost: int
    machine_move_cost: int
    kinds: frozenset[str] = field(default_factory=frozenset)

    @property
    def valid(self) -> bool:
        return not self.violations

    @property
    def total(self) -> int:
        return (
            self.load_cost
            + self.balance_cost
            + self.process_move_cost
            + self.service_move_cost
            + self.machine_move_cost
        )


def _usage(inst: Instance, assignment: IntArray) -> IntArray:
    usage = np.zeros((inst.machines, inst.resources), dtype=np.int64)
    np.add.at(usage, assignment, inst.requirement)
    return usage


def evaluate(inst: Instance, initial: IntArray, assignment: IntArray) -> Evaluation:
    """Check ``assignment`` against every hard constraint and compute its cost, with
    ``initial`` as the original assignment M0."""
    initial = np.asarray(initial, dtype=np.int64)
    assignment = np.asarray(assignment, dtype=np.int64)
    out: list[Violation] = []
    if assignment.shape != (inst.processes,) or initial.shape != (inst.processes,):
        raise ValueError(f"an assignment gives a machine to each of {inst.processes} processes")
    if assignment.min(initial=0) < 0 or assignment.max(initial=0) >= inst.machines:
        raise ValueError(f"machine indices must be in [0, {inst.machines})")
    usage = _usage(inst, assignment)

    # capacity: U(m, r) <= C(m, r)
    for m, r in zip(*np.nonzero(usage > inst.capacity), strict=True):
        out.append(
            Violation(
                "capacity",
                f"machine {m} resource {r}: usage {usage[m, r]} > capacity {inst.capacity[m, r]}",
            )
        )

    # transient: processes that moved still hold transient resources on their origin
    moved = assignment != initial
    transient = usage.copy()
    np.add.at(transient, initial[moved], inst.requirement[moved])
    for m, r in zip(*np.nonzero(transient > inst.capacity), strict=True):
        if inst.transient[r]:
            out.append(
                Violation(
                    "transient",
                    f"machine {m} resource {r}: transient usage {transient[m, r]} > "
                    f"capacity {inst.capacity[m, r]}",
                )
            )

    # conflict: the processes of a service run on distinct machines
    seen: dict[tuple[int, int], int] = {}
    for p in range(inst.processes):
        key = (int(inst.service[p]), int(assignment[p]))
        if key in seen:
            out.append(
                Violation(
                    "conflict",
                    f"processes {seen[key]} and {p} of service {key[0]} share machine {key[1]}",
                )
            )
        else:
            seen[key] = p

    # spread: a service runs in at least spreadMin distinct locations
    locations: list[set[int]] = [set() for _ in range(inst.services)]
    neighborhoods: list[set[int]] = [set() for _ in range(inst.services)]
    for p in range(inst.processes):
        s, m = int(inst.service[p]), int(assignment[p])
        locations[s].add(int(inst.location[m]))
        neighborhoods[s].add(int(inst.neighborhood[m]))
    for s in range(inst.services):
        if len(locations[s]) < inst.spread_min[s]:
            out.append(
                Violation(
                    "spread",
                    f"service {s} runs in {len(locations[s])} locations < spreadMin "
                    f"{inst.spread_min[s]}",
                )
            )

    # dependency: each process of sa runs in a neighbourhood where some process of sb runs
    for p in range(inst.processes):
        sa = int(inst.service[p])
        n = int(inst.neighborhood[assignment[p]])
        for sb in inst.dependencies[sa]:
            if n not in neighborhoods[int(sb)]:
                out.append(
                    Violation(
                        "dependency",
                        f"process {p} of service {sa} in neighbourhood {n} has no process of "
                        f"service {int(sb)} there",
                    )
                )

    load = np.maximum(0, usage - inst.safety).sum(axis=0)
    load_cost = int((inst.weight_load * load).sum())
    available = inst.capacity - usage
    balance_cost = 0
    for (r1, r2, target), weight in zip(inst.balance, inst.weight_balance, strict=True):
        per_machine = np.maximum(0, target * available[:, r1] - available[:, r2])
        balance_cost += int(weight) * int(per_machine.sum())
    process_move = int(inst.process_move_cost[moved].sum())
    moved_per_service = np.bincount(inst.service[moved], minlength=inst.services)
    service_move = int(moved_per_service.max(initial=0))
    machine_move = int(inst.machine_move_cost[initial, assignment].sum())
    return Evaluation(
        violations=tuple(out),
        load_cost=load_cost,
        balance_cost=balance_cost,
        process_move_cost=inst.weight_process_move * process_move,
        service_move_cost=inst.weight_service_move * service_move,
        machine_move_cost=inst.weight_machine_move * machine_move,
        kinds=frozenset(v.kind for v in out),
    )
