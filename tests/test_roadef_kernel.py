"""The compiled kernel of the reassignment search: its pricing agrees with the reference
(``State``) and the evaluator, and its ejection chain finds what a shift or a swap cannot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scheduler.solver.reassign import (
    Instance,
    State,
    annealing,
    assignment_path,
    evaluate,
    kernel,
    read_assignment,
    read_model,
)
from scheduler.solver.reassign.local import Compiled, late_acceptance

DATA = Path(__file__).parent / "data" / "roadef"
EXAMPLE = DATA / "model_example.txt"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "roadef2012"
A1_4 = SHARED / "A" / "model_a1_4.txt"
A2_2 = SHARED / "A" / "model_a2_2.txt"  # transient resources
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/roadef2012")
# the example, and (with the shared data) a1_4 and a2_2, which has transient resources
ON_THREE_INSTANCES = pytest.mark.parametrize(
    "path",
    [EXAMPLE, pytest.param(A1_4, marks=needs_shared), pytest.param(A2_2, marks=needs_shared)],
)
pytestmark = pytest.mark.usefixtures("roadef_kernel_compiled")


def load(path: Path) -> tuple:
    inst = read_model(path)
    return inst, read_assignment(assignment_path(path), inst)


def wander(state: State, rng: np.random.Generator, steps: int) -> None:
    """Feasible random moves, so that processes sit away from their origins."""
    for _ in range(steps):
        p = int(rng.integers(state.inst.processes))
        ok = np.flatnonzero(np.isfinite(state.shift_deltas(p)))
        if len(ok):
            state.shift(p, int(rng.choice(ok)))


@ON_THREE_INSTANCES
def test_compiled_shift_pricing_agrees_with_the_reference_on_random_moves(path):
    inst, initial = load(path)
    state = State(inst, initial)
    rng = np.random.default_rng(5)
    wander(state, rng, 40)
    c = Compiled(state)
    for p in rng.choice(inst.processes, min(inst.processes, 25), replace=False):
        reference = state.shift_deltas(int(p))
        for m in range(inst.machines):
            d = kernel.shift_delta(c.md, c.st, int(p), m)
            if np.isinf(reference[m]):
                assert d == kernel.INF, (p, m)
            else:
                assert d == reference[m], (p, m)


@ON_THREE_INSTANCES
def test_compiled_swaps_and_shifts_keep_the_exact_cost_of_the_evaluator(path):
    inst, initial = load(path)
    state = State(inst, initial)
    rng = np.random.default_rng(9)
    wander(state, rng, 40)
    c = Compiled(state)
    cost = evaluate(inst, initial, c.assign).total
    assert c.cost == cost
    for _ in range(300):
        p, q = (int(v) for v in rng.integers(inst.processes, size=2))
        swapped = c.assign.copy()
        swapped[p], swapped[q] = swapped[q], swapped[p]
        d = kernel.try_swap(c.md, c.st, p, q, kernel.INF - 1)
        if c.assign[p] == c.assign[q] and d == kernel.INF:
            continue  # same machine: no swap
        ev = evaluate(inst, initial, swapped)
        assert (d != kernel.INF) == ev.valid, (p, q, ev.kinds)
        if ev.valid:
            assert cost + d == ev.total == c.cost
            cost = ev.total
    assert c.state().cost == cost  # the way back to the reference state agrees too


def blocked_instance() -> tuple[Instance, np.ndarray]:
    """p (on A, where all its first resource costs) fits only on B, which q fills; q can go to
    C at no gain; p cannot use C (no second resource there); a swap puts the bigger q on A."""
    i64 = np.int64
    inst = Instance(
        name="blocked",
        transient=np.array([False, False]),
        weight_load=np.array([1, 1], i64),
        neighborhood=np.zeros(3, i64),
        location=np.zeros(3, i64),
        capacity=np.array([[10, 10], [10, 10], [10, 0]], i64),
        safety=np.array([[0, 10], [10, 10], [10, 0]], i64),
        machine_move_cost=np.zeros((3, 3), i64),
        spread_min=np.zeros(2, i64),
        dependencies=(np.zeros(0, i64), np.zeros(0, i64)),
        service=np.array([0, 1], i64),
        requirement=np.array([[6, 1], [8, 0]], i64),
        process_move_cost=np.zeros(2, i64),
        balance=np.zeros((0, 3), i64),
        weight_balance=np.zeros(0, i64),
        weight_process_move=0,
        weight_service_move=0,
        weight_machine_move=0,
    )
    return inst, np.array([0, 1], i64)


def test_chain_finds_an_improvement_no_shift_or_swap_can_when_the_target_is_full():
    inst, initial = blocked_instance()
    state = State(inst, initial)
    assert state.cost == 6
    for p in range(2):
        assert (state.shift_deltas(p) >= 0).all()
    assert not (state.swap_deltas(0, np.array([1])) < 0).any()
    c = Compiled(state)
    out = np.zeros(5, dtype=np.int64)
    for _ in range(50):  # the ejected process's machine is drawn: C comes up soon
        d = kernel.try_chain(c.md, c.st, 0, 1, kernel.CHAIN_TRIES, -1, out)
        if d != kernel.INF:
            break
    assert d == -6 and out[4] == 1
    assert c.assign.tolist() == [1, 2]
    ev = evaluate(inst, initial, c.assign)
    assert ev.valid and ev.total == 0 == c.cost


def test_late_acceptance_with_chains_reaches_the_blocked_optimum():
    inst, initial = blocked_instance()
    state, stats = late_acceptance(
        State(inst, initial), float("inf"), 3, chain_share=0.3, max_moves=2000
    )
    assert state.cost == 0 and evaluate(inst, initial, state.assign).valid
    assert stats["la_tried"] == 2000


def test_eviction_finds_an_improvement_no_shift_or_swap_can_when_the_target_is_full():
    inst, initial = blocked_instance()
    c = Compiled(State(inst, initial))
    out = np.zeros(annealing.EVICT_MAX + 2, dtype=np.int64)
    for _ in range(50):  # q's new machine is drawn: C comes up soon
        d = annealing.try_evict(c.md, c.st, 0, 1, 2, 2, -1, out)
        if d != kernel.INF:
            break
    assert d == -6 and out[-1] == 2 and out[:2].tolist() == [1, 0]  # q out, then p in
    assert c.assign.tolist() == [1, 2]
    ev = evaluate(inst, initial, c.assign)
    assert ev.valid and ev.total == 0 == c.cost


def test_eviction_leaves_every_counter_as_it_was_when_refused():
    inst, initial = blocked_instance()
    c = Compiled(State(inst, initial))
    before = [a.copy() for a in c.st]
    out = np.zeros(annealing.EVICT_MAX + 2, dtype=np.int64)
    for _ in range(20):  # nothing gains 7: every attempt is undone
        assert annealing.try_evict(c.md, c.st, 0, 1, 2, 2, -7, out) == kernel.INF
    assert all(np.array_equal(a, b) for a, b in zip(before, c.st, strict=True))


@pytest.mark.parametrize(
    "path", [pytest.param(A1_4, marks=needs_shared), pytest.param(A2_2, marks=needs_shared)]
)
def test_evictions_keep_every_rule_and_the_exact_cost_of_the_evaluator(path):
    inst, initial = load(path)
    c = Compiled(State(inst, initial))
    rng = np.random.default_rng(4)
    out = np.zeros(annealing.EVICT_MAX + 2, dtype=np.int64)
    kept = 0
    for _ in range(400):  # any change accepted: the rules alone decide
        p, m = int(rng.integers(inst.processes)), int(rng.integers(inst.machines))
        kept += annealing.try_evict(
            c.md, c.st, p, m, annealing.EVICT_MAX, 8, kernel.INF - 1, out
        ) != (kernel.INF)
    ev = evaluate(inst, initial, c.assign)
    assert kept and ev.valid and ev.total == c.cost
    assert c.state().cost == c.cost


def partners_instance() -> tuple[Instance, np.ndarray]:
    """p (9) on A (safety 5); on B (safety 10) three processes of 1, 4 and 7: swapping p with
    them changes the cost by +4, +1 and 0."""
    i64 = np.int64
    inst = Instance(
        name="partners",
        transient=np.array([False]),
        weight_load=np.array([1], i64),
        neighborhood=np.zeros(2, i64),
        location=np.zeros(2, i64),
        capacity=np.array([[20], [20]], i64),
        safety=np.array([[5], [10]], i64),
        machine_move_cost=np.zeros((2, 2), i64),
        spread_min=np.zeros(4, i64),
        dependencies=tuple(np.zeros(0, i64) for _ in range(4)),
        service=np.arange(4, dtype=i64),
        requirement=np.array([[9], [1], [4], [7]], i64),
        process_move_cost=np.zeros(4, i64),
        balance=np.zeros((0, 3), i64),
        weight_balance=np.zeros(0, i64),
        weight_process_move=0,
        weight_service_move=0,
        weight_machine_move=0,
    )
    return inst, np.array([0, 1, 1, 1], i64)


def test_best_swap_takes_the_partner_whose_exchange_costs_least():
    inst, initial = partners_instance()
    state = State(inst, initial)
    assert state.cost == 6
    assert state.swap_deltas(0, np.array([1, 2, 3])).tolist() == [4, 1, 0]
    c = Compiled(state)
    before = [a.copy() for a in c.st]
    assert annealing.best_swap(c.md, c.st, 0, 1, -1) == (kernel.INF, 3)  # 0 is over the limit
    assert all(np.array_equal(a, b) for a, b in zip(before, c.st, strict=True))
    assert annealing.best_swap(c.md, c.st, 0, 1, 0) == (0, 3)
    assert c.assign.tolist() == [1, 1, 1, 0]
    ev = evaluate(inst, initial, c.assign)
    assert ev.valid and ev.total == 6 == c.cost


@pytest.mark.parametrize(
    "path", [pytest.param(A1_4, marks=needs_shared), pytest.param(A2_2, marks=needs_shared)]
)
def test_best_swaps_keep_every_rule_and_the_exact_cost_of_the_evaluator(path):
    inst, initial = load(path)
    c = Compiled(State(inst, initial))
    rng = np.random.default_rng(5)
    kept = 0
    for _ in range(300):  # any change accepted: the rules alone decide
        p, m = int(rng.integers(inst.processes)), int(rng.integers(inst.machines))
        was = int(c.assign[p])
        d, q = annealing.best_swap(c.md, c.st, p, m, kernel.INF - 1)
        kept += d != kernel.INF
        assert d == kernel.INF or (c.assign[p] == m and c.assign[q] == was)
    ev = evaluate(inst, initial, c.assign)
    assert kept and ev.valid and ev.total == c.cost
    assert c.state().cost == c.cost
