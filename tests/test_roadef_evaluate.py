"""The independent evaluator: the specification's worked costs, planted violations of every
hard constraint, and the published initial costs of the challenge's instances."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scheduler.solver.reassign import (
    assignment_path,
    evaluate,
    read_assignment,
    read_bound,
    read_model,
)

DATA = Path(__file__).parent / "data" / "roadef"
EXAMPLE = DATA / "model_example.txt"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "roadef2012"

# the specification's transient example (section 1.2.5): CPU and DISK, DISK transient; p1 on m1,
# p2 on m2; once p2 moves to m3, its DISK is still held on m2 and p1 cannot take it
TRANSIENT_MODEL = """2
0 1
1 1
3
0 0 3 10 3 10 0 0 0
0 1 3 10 3 10 0 0 0
0 2 3 7 3 7 0 0 0
2
1 0
1 0
2
0 1 8 0
1 1 6 0
0
1 1 1
"""


def example() -> tuple:
    inst = read_model(EXAMPLE)
    return inst, read_assignment(assignment_path(EXAMPLE), inst)


@pytest.mark.parametrize(
    ("assignment", "cost", "terms"),
    [
        # section 2.2: the original solution, one move, the optimum
        ([0, 3, 0], 4200, (1700, 2500, 0, 0, 0)),
        ([0, 2, 0], 3510, (1500, 1700, 100, 10, 200)),
        ([0, 2, 1], 2411, (400, 1600, 101, 10, 300)),
    ],
)
def test_evaluator_computes_the_specification_example_costs(assignment, cost, terms):
    inst, initial = example()
    ev = evaluate(inst, initial, np.array(assignment))
    assert ev.valid
    assert ev.total == cost
    assert (
        ev.load_cost,
        ev.balance_cost,
        ev.process_move_cost,
        ev.service_move_cost,
        ev.machine_move_cost,
    ) == terms


@pytest.mark.parametrize(
    ("assignment", "kind"),
    [
        ([0, 3, 2], "capacity"),  # p3's 200 units of r2 on m3 (capacity 100)
        ([0, 0, 1], "conflict"),  # p1 and p2 of service 0 on m1
        ([0, 1, 0], "spread"),  # service 0 only in location 0 (spreadMin 2)
        ([2, 3, 0], "dependency"),  # p3 (service 1) in neighbourhood 0, service 0 only in 1
    ],
)
def test_evaluator_finds_a_planted_violation_when_a_constraint_breaks(assignment, kind):
    inst, initial = example()
    ev = evaluate(inst, initial, np.array(assignment))
    assert not ev.valid
    assert kind in ev.kinds
    assert all(v.detail for v in ev.violations)


def test_planted_violations_break_only_their_own_constraint():
    inst, initial = example()
    for assignment, kind in (
        ([0, 3, 2], "capacity"),
        ([0, 1, 0], "spread"),
        ([2, 3, 0], "dependency"),
    ):
        assert evaluate(inst, initial, np.array(assignment)).kinds == {kind}


def test_evaluator_finds_transient_usage_when_an_origin_still_holds_a_moved_process(tmp_path):
    path = tmp_path / "model_transient.txt"
    path.write_text(TRANSIENT_MODEL)
    inst = read_model(path)
    initial = np.array([0, 1])
    assert evaluate(inst, initial, np.array([0, 2])).valid  # p2 to m3: fine
    ev = evaluate(inst, initial, np.array([1, 2]))  # then p1 to m2: 8 + 6 DISK > 10
    assert ev.kinds == {"transient"}
    assert "machine 1 resource 1" in ev.violations[0].detail


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/roadef2012")
@pytest.mark.parametrize(
    "name", ["a1_1", "a1_2", "a1_3", "a1_4", "a1_5", "a2_1", "a2_2", "a2_3", "a2_4", "a2_5", "b_01"]
)
def test_initial_cost_equals_the_published_original_cost(name):
    folder = SHARED / ("B" if name.startswith("b") else "A")
    inst = read_model(folder / f"model_{name}.txt")
    initial = read_assignment(folder / f"assignment_{name}.txt", inst)
    ev = evaluate(inst, initial, initial)
    assert ev.valid
    assert ev.total == read_bound(folder / f"original_cost_{name}.txt")
