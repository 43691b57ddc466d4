"""The ROADEF 2012 readers: the specification's example, and malformed files named by line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scheduler.solver.reassign import (
    RoadefFormatError,
    assignment_path,
    read_assignment,
    read_bound,
    read_model,
    write_assignment,
)
from scheduler.solver.reassign.model import parse_integers

DATA = Path(__file__).parent / "data" / "roadef"
EXAMPLE = DATA / "model_example.txt"


def test_read_model_reads_the_specification_example():
    inst = read_model(EXAMPLE)
    assert (inst.name, inst.machines, inst.processes, inst.services) == ("example", 4, 3, 2)
    assert inst.transient.tolist() == [True, False]
    assert inst.weight_load.tolist() == [100, 10]
    assert inst.capacity[0].tolist() == [30, 400] and inst.safety[3].tolist() == [8, 80]
    assert inst.machine_move_cost[3].tolist() == [5, 4, 2, 0]
    assert inst.spread_min.tolist() == [2, 1]
    assert [d.tolist() for d in inst.dependencies] == [[], [0]]
    assert inst.service.tolist() == [0, 0, 1]
    assert inst.requirement[2].tolist() == [6, 200]
    assert inst.process_move_cost.tolist() == [1000, 100, 1]
    assert inst.balance.tolist() == [[0, 1, 20]] and inst.weight_balance.tolist() == [10]
    assert (inst.weight_process_move, inst.weight_service_move, inst.weight_machine_move) == (
        1,
        10,
        100,
    )


def test_assignment_beside_a_model_replaces_model_by_assignment():
    assert assignment_path(EXAMPLE) == DATA / "assignment_example.txt"
    inst = read_model(EXAMPLE)
    assert read_assignment(assignment_path(EXAMPLE), inst).tolist() == [0, 3, 0]


def test_written_solution_reads_back(tmp_path):
    inst = read_model(EXAMPLE)
    path = tmp_path / "solution_example.txt"
    write_assignment(path, np.array([0, 2, 1]))
    assert path.read_text() == "0 2 1\n"
    assert read_assignment(path, inst).tolist() == [0, 2, 1]


def _model_lines() -> list[str]:
    return EXAMPLE.read_text().splitlines()


@pytest.mark.parametrize(
    ("edit", "line", "reason"),
    [
        (lambda ls: ls[:10], 11, "unexpected end of file"),
        (
            lambda ls: [*ls[:4], "0 0 30 x 16 80 0 1 4 5", *ls[5:]],
            5,
            "expected an integer, got 'x'",
        ),
        (lambda ls: [*ls, "7"], 19, "extra number after the end: 7"),
        (lambda ls: [*ls[:1], "2 100", *ls[2:]], 2, "a transient flag must be 0 or 1"),
        (lambda ls: [*ls[:12], "5 12 10 1000", *ls[13:]], 13, "service of process 0: 5 is not < 2"),
        (
            lambda ls: [*ls[:10], "1 1 7", *ls[11:]],
            11,
            "dependencies of service 1: 7 is not in [0, 2)",
        ),
        (lambda ls: [*ls[:4], "0 0 30 400 31 80 0 1 4 5", *ls[5:]], 5, "safety capacity exceeds"),
        (lambda ls: [], 1, "empty file"),
    ],
)
def test_malformed_model_fails_with_file_line_and_reason(tmp_path, edit, line, reason):
    path = tmp_path / "model_bad.txt"
    path.write_text("\n".join(edit(_model_lines())) + "\n")
    with pytest.raises(RoadefFormatError) as err:
        read_model(path)
    assert (err.value.path, err.value.line) == (str(path), line)
    assert reason in err.value.reason
    assert str(err.value).startswith(f"{path}:{line}: ")


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("0 3\n", 2, "unexpected end of file"),
        ("0\n4\n0\n", 2, "machine of a process: 4 is not in [0, 4)"),
        ("0 3 0\n1\n", 2, "extra number"),
        ("0 -1 0\n", 1, "is not in [0, 4)"),
    ],
)
def test_malformed_assignment_fails_with_file_line_and_reason(tmp_path, text, line, reason):
    path = tmp_path / "assignment_bad.txt"
    path.write_text(text)
    with pytest.raises(RoadefFormatError) as err:
        read_assignment(path, read_model(EXAMPLE))
    assert (err.value.path, err.value.line) == (str(path), line)
    assert reason in err.value.reason


def test_missing_file_fails_naming_it(tmp_path):
    with pytest.raises(RoadefFormatError, match="cannot read"):
        read_bound(tmp_path / "lb_none.txt")


def test_bound_file_holds_one_number():
    assert read_bound(DATA / "lb_example.txt") == 2411


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "roadef2012"


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/roadef2012")
def test_compiled_reader_reads_every_data_file_as_python_reads_its_integers():
    paths = [*sorted(SHARED.glob("[AB]/*_*.txt")), *sorted(DATA.glob("*.txt"))]
    assert len(paths) > 70
    for path in paths:
        text = path.read_text()
        values = np.empty(len(text) // 2 + 1, dtype=np.int64)
        count, bad = parse_integers(np.frombuffer(text.encode(), dtype=np.uint8), values)
        assert bad == -1 and values[:count].tolist() == [int(f) for f in text.split()], path


@pytest.mark.parametrize(
    ("text", "numbers", "bad"),
    [
        ("1 -2 +3\t4\r\n5", [1, -2, 3, 4, 5], -1),
        ("  \n", [], -1),
        ("12 3a 4", [12], 4),
        ("1 - 2", [1], 3),
        ("7 1.5", [7], 3),
        ("4294967295 0", [4294967295, 0], -1),
    ],
)
def test_compiled_reader_stops_at_the_first_character_of_no_integer(text, numbers, bad):
    values = np.empty(len(text) // 2 + 1, dtype=np.int64)
    count, at = parse_integers(np.frombuffer(text.encode(), dtype=np.uint8), values)
    assert (values[:count].tolist(), at) == (numbers, bad)
