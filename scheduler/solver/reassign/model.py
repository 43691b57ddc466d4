"""The machine-reassignment model (ROADEF/EURO Challenge 2012, Google) and its file formats.

An instance is a set of machines (capacities, safety capacities, a neighbourhood, a location,
the cost of moving a process from each machine to every other), services (a minimum spread over
locations, the services each depends on), processes (a service, requirements, a move cost),
balance objectives and the weights of the cost terms. An assignment gives each process a
machine. The model and assignment files are whitespace-separated integers in the order of the
specification (``problem_definition_v1``, section 2); line breaks carry no meaning, so a bad
file is reported with the line of the offending number.

Costs exceed 32 bits: every quantity is an ``int64`` array.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from scheduler.solver.jit import jit

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


class RoadefFormatError(ValueError):
    """A malformed model, assignment or bound file: names the file, the line and the reason."""

    def __init__(self, path: str | Path, line: int, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        super().__init__(f"{path}:{line}: {reason}")


@dataclass(frozen=True, eq=False)
class Instance:
    """One machine-reassignment instance (indices are 0-based, as in the files)."""

    name: str
    transient: BoolArray  # R: the resource needs capacity on both the origin and the target
    weight_load: IntArray  # R
    neighborhood: IntArray  # M
    location: IntArray  # M
    capacity: IntArray  # M x R
    safety: IntArray  # M x R
    machine_move_cost: IntArray  # M x M, MMC(source, target)
    spread_min: IntArray  # S
    dependencies: tuple[IntArray, ...]  # S: the services each service depends on
    service: IntArray  # P: the service of each process
    requirement: IntArray  # P x R
    process_move_cost: IntArray  # P
    balance: IntArray  # B x 3: resource r1, resource r2, target
    weight_balance: IntArray  # B
    weight_process_move: int
    weight_service_move: int
    weight_machine_move: int

    @property
    def machines(self) -> int:
        return len(self.capacity)

    @property
    def processes(self) -> int:
        return len(self.service)

    @property
    def services(self) -> int:
        return len(self.spread_min)

    @property
    def resources(self) -> int:
        return len(self.transient)


@jit
def parse_integers(text: Any, out: Any) -> tuple[int, int]:
    """The whitespace-separated integers (an optional sign, then digits) of ``text`` (bytes as
    a ``uint8`` array) into ``out`` (at least half as long, plus one): how many, and the
    offset of the first character that is not part of one (-1 when none). A compiled pass:
    numpy's ``fromstring`` took 1.9-5.9 s for the 25 M numbers of a model with 5,000 machines
    on a loaded machine, inside the challenge's limit."""
    n = 0
    i = 0
    end = text.shape[0]
    while i < end:
        c = text[i]
        if c == 32 or 9 <= c <= 13:  # space, tab, newlines, vertical tab, form feed
            i += 1
            continue
        negative = c == 45  # '-'
        if c == 45 or c == 43:  # '+'
            i += 1
        if i >= end or not 48 <= text[i] <= 57:
            return n, i
        value = 0
        while i < end and 48 <= text[i] <= 57:
            value = value * 10 + (text[i] - 48)
            i += 1
        if i < end and not (text[i] == 32 or 9 <= text[i] <= 13):
            return n, i
        out[n] = -value if negative else value
        n += 1
    return n, -1


class _Tokens:
    """The integers of a file and a cursor over them; errors name the line of a token."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text
        self.pos = 0
        raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        values = np.empty(len(raw) // 2 + 1, dtype=np.int64)
        count, bad = parse_integers(raw, values)
        if bad >= 0:  # anything but integers: the slow scan names its line
            self.values = np.empty(0, dtype=np.int64)
            self._raise_first_bad_token()
        self.values = values[:count]
        if not text.strip():
            raise RoadefFormatError(path, 1, "empty file")

    def _raise_first_bad_token(self) -> None:
        for lineno, line in enumerate(self.text.splitlines(), start=1):
            for field in line.split():
                try:
                    int(field)
                except ValueError:
                    raise RoadefFormatError(
                        self.path, lineno, f"expected an integer, got {field!r}"
                    ) from None
        raise RoadefFormatError(self.path, 1, "unreadable numbers")

    def line_of(self, index: int) -> int:
        """The line of token ``index`` (the line after the last one when past the end)."""
        seen = 0
        lines = self.text.splitlines()
        for lineno, line in enumerate(lines, start=1):
            seen += len(line.split())
            if seen > index:
                return lineno
        return len(lines) + 1

    def fail(self, index: int, reason: str) -> RoadefFormatError:
        return RoadefFormatError(self.path, self.line_of(index), reason)

    def take(self, count: int, what: str, low: int = 0, high: int | None = None) -> IntArray:
        """The next ``count`` integers, each in ``[low, high)`` (no upper bound when None)."""
        end = self.pos + count
        if end > len(self.values):
            raise self.fail(len(self.values), f"unexpected end of file: {what} missing")
        out = self.values[self.pos : end]
        bad = np.flatnonzero((out < low) | ((out >= high) if high is not None else False))
        if len(bad):
            k = int(bad[0])
            limit = f"in [{low}, {high})" if high is not None else f">= {low}"
            raise self.fail(self.pos + k, f"{what}: {int(out[k])} is not {limit}")
        self.pos = end
        return out

    def one(self, what: str, low: int = 0, high: int | None = None) -> int:
        return int(self.take(1, what, low, high)[0])

    def finish(self) -> None:
        if self.pos < len(self.values):
            raise self.fail(self.pos, f"extra number after the end: {int(self.values[self.pos])}")


def _tokens(path: str | Path) -> _Tokens:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RoadefFormatError(p, 0, f"cannot read: {e}") from None
    return _Tokens(p, text)


def instance_name(path: str | Path) -> str:
    """``model_a1_1.txt`` -> ``a1_1``."""
    stem = Path(path).stem
    return stem.removeprefix("model_")


def _services(t: _Tokens, n_serv: int) -> tuple[IntArray, list[IntArray]]:
    """The services' spreadMin and dependencies. A pass with no check per number first (with
    ``take``'s per service, 35,000 services took a second); on anything wrong, the checked
    pass again from the start, which names the line and the reason."""
    start = pos = t.pos
    values, end = t.values, len(t.values)
    spread = np.empty(n_serv, dtype=np.int64)
    deps: list[IntArray] = []
    for s in range(n_serv):
        n_dep = int(values[pos + 1]) if pos + 2 <= end else -1
        if n_dep < 0 or values[pos] < 0 or pos + 2 + n_dep > end:
            break
        spread[s] = values[pos]
        deps.append(values[pos + 2 : pos + 2 + n_dep].copy())
        pos += 2 + n_dep
    every = np.concatenate(deps) if deps else np.zeros(0, dtype=np.int64)
    if len(deps) == n_serv and (not len(every) or (every.min() >= 0 and every.max() < n_serv)):
        t.pos = pos
        return spread, deps
    t.pos = start
    deps = []
    for s in range(n_serv):
        spread[s] = t.one(f"spreadMin of service {s}")
        n_dep = t.one(f"number of dependencies of service {s}")
        deps.append(t.take(n_dep, f"dependencies of service {s}", 0, n_serv).copy())
    return spread, deps


def read_model(path: str | Path) -> Instance:
    """Read a model file in the order of the specification (section 2.1)."""
    t = _tokens(path)
    n_res = t.one("number of resources", 1)
    res = t.take(2 * n_res, "resource (transient flag, load weight)").reshape(n_res, 2)
    if np.any(res[:, 0] > 1):
        k = int(np.flatnonzero(res[:, 0] > 1)[0])
        raise t.fail(t.pos - 2 * (n_res - k), "a transient flag must be 0 or 1")
    n_mach = t.one("number of machines", 1)
    width = 2 + 2 * n_res + n_mach  # neighbourhood, location, C, SC, MMC row
    start = t.pos
    rows = t.take(n_mach * width, "machines (neighbourhood, location, capacities, ...)")
    rows = rows.reshape(n_mach, width)
    neighborhood = rows[:, 0].copy()
    location = rows[:, 1].copy()
    capacity = rows[:, 2 : 2 + n_res].copy()
    safety = rows[:, 2 + n_res : 2 + 2 * n_res].copy()
    mmc = rows[:, 2 + 2 * n_res :].copy()
    over = np.flatnonzero((safety > capacity).any(axis=1))
    if len(over):
        m = int(over[0])
        raise t.fail(
            start + m * width + 2 + n_res, f"machine {m}: a safety capacity exceeds its capacity"
        )
    n_serv = t.one("number of services")
    spread, deps = _services(t, n_serv)
    n_proc = t.one("number of processes")
    width = n_res + 2  # service, requirements, move cost
    start = t.pos
    rows = t.take(n_proc * width, "processes (service, requirements, move cost)")
    rows = rows.reshape(n_proc, width)
    bad = np.flatnonzero(rows[:, 0] >= n_serv)
    if len(bad):
        p = int(bad[0])
        raise t.fail(
            start + p * width, f"service of process {p}: {int(rows[p, 0])} is not < {n_serv}"
        )
    service = rows[:, 0].copy()
    req = rows[:, 1 : 1 + n_res].copy()
    pmc = rows[:, 1 + n_res].copy()
    n_bal = t.one("number of balance costs")
    balance = np.empty((n_bal, 3), dtype=np.int64)
    wbal = np.empty(n_bal, dtype=np.int64)
    for b in range(n_bal):
        balance[b, :2] = t.take(2, f"resources of balance cost {b}", 0, n_res)
        balance[b, 2] = t.one(f"target of balance cost {b}")
        wbal[b] = t.one(f"weight of balance cost {b}")
    wp, ws, wm = (int(v) for v in t.take(3, "weights of the process, service and machine moves"))
    t.finish()
    return Instance(
        name=instance_name(path),
        transient=res[:, 0].astype(bool),
        weight_load=res[:, 1].copy(),
        neighborhood=neighborhood,
        location=location,
        capacity=capacity,
        safety=safety,
        machine_move_cost=mmc,
        spread_min=spread,
        dependencies=tuple(deps),
        service=service,
        requirement=req,
        process_move_cost=pmc,
        balance=balance,
        weight_balance=wbal,
        weight_process_move=wp,
        weight_service_move=ws,
        weight_machine_move=wm,
    )


def read_assignment(path: str | Path, instance: Instance) -> IntArray:
    """Read an assignment (or solution) file: one machine index per process."""
    t = _tokens(path)
    out = t.take(instance.processes, "machine of a process", 0, instance.machines).copy()
    t.finish()
    return out


def read_bound(path: str | Path) -> int:
    """Read a one-number file (``lb_*``, ``original_cost_*``)."""
    t = _tokens(path)
    value = t.one("the number")
    t.finish()
    return value


def write_assignment(path: str | Path, assignment: IntArray) -> None:
    """Write an assignment in the challenge's solution format (machine indices on one line)."""
    Path(path).write_text(" ".join(str(int(m)) for m in assignment) + "\n", encoding="utf-8")


def _line(values: IntArray) -> str:
    return " ".join(map(str, np.asarray(values).tolist()))


def write_model(path: str | Path, inst: Instance) -> None:
    """Write a model file in the order of the specification (section 2.1), one machine,
    service, process or balance item a line: ``read_model`` reads it back to the same
    instance."""
    lines = [str(inst.resources)]
    lines += [f"{int(t)} {int(w)}" for t, w in zip(inst.transient, inst.weight_load, strict=True)]
    lines.append(str(inst.machines))
    machines = np.column_stack(
        (inst.neighborhood, inst.location, inst.capacity, inst.safety, inst.machine_move_cost)
    )
    lines += [_line(row) for row in machines]
    lines.append(str(inst.services))
    lines += [
        _line(np.concatenate(([spread, len(deps)], deps)))
        for spread, deps in zip(inst.spread_min, inst.dependencies, strict=True)
    ]
    lines.append(str(inst.processes))
    processes = np.column_stack((inst.service, inst.requirement, inst.process_move_cost))
    lines += [_line(row) for row in processes]
    lines.append(str(len(inst.weight_balance)))
    for row, weight in zip(inst.balance, inst.weight_balance, strict=True):
        lines += [_line(row), str(int(weight))]
    moves = (inst.weight_process_move, inst.weight_service_move, inst.weight_machine_move)
    lines.append(" ".join(str(int(w)) for w in moves))
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def assignment_path(model: str | Path) -> Path:
    """The initial assignment beside a model file: ``model_X`` -> ``assignment_X`` (or the
    specification example's ``initial_solution_X``)."""
    p = Path(model)
    rest = p.name.removeprefix("model_")
    for prefix in ("assignment_", "initial_solution_"):
        candidate = p.with_name(prefix + rest)
        if candidate.is_file():
            return candidate
    return p.with_name("assignment_" + rest)
