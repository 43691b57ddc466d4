"""Machine reassignment: move running processes to cheaper machines under hard rules.

The ROADEF/EURO Challenge 2012 (Google) problem: machines with capacities and safety
capacities, processes with requirements grouped into services, hard rules (capacity, transient
usage, conflict, spread, dependency) and a priced objective (load, balance, process-, service-
and machine-move costs). ``model`` reads and writes the challenge's files; ``evaluate`` is an
independent checker written from the specification; ``state`` keeps an assignment's cost and
constraint counters incrementally and prices moves (``State.shift_deltas``, ``swap_deltas``);
``kernel`` is the same bookkeeping compiled (numba: exact shift, swap and ejection-chain moves at
about a million a second), ``annealing`` its simulated annealing (with evictions: processes
moved off a full machine to make room), ``relocate`` relocations (a process to a machine once
some of its processes have moved out, aware of what transient resources hold) and ``local``
drives them (annealing, steepest descent, relocation rounds, late-acceptance hill climbing);
``search`` (``reassign``) is the engine: annealing and the descent from the initial assignment,
relocation rounds, a warm annealing or late acceptance from the better, then a large
neighbourhood search whose sub-problems (a few machines) CP-SAT solves exactly (``lns``).
"""

from __future__ import annotations

from scheduler.solver.reassign.evaluate import CONSTRAINTS, Evaluation, Violation, evaluate
from scheduler.solver.reassign.model import (
    Instance,
    RoadefFormatError,
    assignment_path,
    instance_name,
    read_assignment,
    read_bound,
    read_model,
    write_assignment,
    write_model,
)
from scheduler.solver.reassign.search import ReassignResult, reassign
from scheduler.solver.reassign.state import State

__all__ = [
    "CONSTRAINTS",
    "Evaluation",
    "Instance",
    "ReassignResult",
    "RoadefFormatError",
    "State",
    "Violation",
    "assignment_path",
    "evaluate",
    "instance_name",
    "read_assignment",
    "read_bound",
    "read_model",
    "reassign",
    "write_assignment",
    "write_model",
]
