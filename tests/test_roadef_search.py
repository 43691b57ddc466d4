"""The reassignment engine: move pricing agrees with the evaluator, and the search returns a
valid assignment never costlier than the initial one, the same for the same seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scheduler.solver.reassign import (
    State,
    assignment_path,
    evaluate,
    read_assignment,
    read_model,
    reassign,
)
from scheduler.solver.reassign.lns import returners, solve_neighbourhood
from scheduler.solver.reassign.local import anneal, descend
from scheduler.solver.reassign.search import SearchParams

DATA = Path(__file__).parent / "data" / "roadef"
EXAMPLE = DATA / "model_example.txt"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "roadef2012"
A1_1 = SHARED / "A" / "model_a1_1.txt"
A1_4 = SHARED / "A" / "model_a1_4.txt"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/roadef2012")
pytestmark = pytest.mark.usefixtures("roadef_kernel_compiled")


def load(path: Path) -> tuple:
    inst = read_model(path)
    return inst, read_assignment(assignment_path(path), inst)


def check_pricing_against_the_evaluator(inst, initial, state: State, processes) -> None:
    for p in processes:
        deltas = state.shift_deltas(int(p))
        m0 = int(state.assign[p])
        before = evaluate(inst, initial, state.assign).total
        for m in range(inst.machines):
            if m == m0:
                assert deltas[m] == np.inf
                continue
            moved = state.assign.copy()
            moved[p] = m
            ev = evaluate(inst, initial, moved)
            assert np.isfinite(deltas[m]) == ev.valid, (p, m, ev.kinds)
            if ev.valid:
                assert before + deltas[m] == ev.total
                state.shift(int(p), m)
                assert state.cost == ev.total and state.check((m0, m), (int(p),))
                state.shift(int(p), m0)


def test_shift_pricing_matches_the_evaluator_on_every_machine_of_the_example():
    inst, initial = load(EXAMPLE)
    state = State(inst, initial)
    check_pricing_against_the_evaluator(inst, initial, state, range(inst.processes))
    state.shift(1, 2)  # after a move: transient usage held on the origin, a moved service
    check_pricing_against_the_evaluator(inst, initial, state, range(inst.processes))


@needs_shared
def test_shift_pricing_matches_the_evaluator_after_random_moves_on_a1_4():
    inst, initial = load(A1_4)  # spread and dependencies, 50 machines
    state = State(inst, initial)
    rng = np.random.default_rng(3)
    for _ in range(60):  # wander through feasible states, some moves far from the origin
        p = int(rng.integers(inst.processes))
        ok = np.flatnonzero(np.isfinite(state.shift_deltas(p)))
        if len(ok):
            state.shift(p, int(rng.choice(ok)))
    assert state.cost == evaluate(inst, initial, state.assign).total
    check_pricing_against_the_evaluator(inst, initial, state, rng.choice(inst.processes, 4))


def test_swap_pricing_matches_the_cost_change_when_the_swap_is_feasible():
    inst, initial = load(EXAMPLE)
    state = State(inst, initial)
    d = state.swap_deltas(0, np.array([1, 2]))
    for q, delta in zip((1, 2), d, strict=True):
        moved = state.assign.copy()
        moved[0], moved[q] = moved[q], moved[0]
        ev = evaluate(inst, initial, moved)
        if np.isfinite(delta) and ev.valid and inst.service[0] != inst.service[q]:
            assert state.cost + delta == ev.total


def test_search_finds_the_example_optimum_and_never_breaks_a_rule():
    inst, initial = load(EXAMPLE)
    result = reassign(inst, initial, time_limit_s=2.0, seed=0)
    ev = evaluate(inst, initial, result.assignment)
    assert ev.valid
    assert result.cost == ev.total == 2411  # the specification's optimum
    assert result.initial_cost == 4200
    assert result.seconds <= 2.5


@needs_shared
@pytest.mark.parametrize("seed", [0, 1])
def test_search_returns_a_valid_assignment_no_costlier_than_the_initial_on_a1_1(seed):
    inst, initial = load(A1_1)
    result = reassign(inst, initial, time_limit_s=3.0, seed=seed)
    ev = evaluate(inst, initial, result.assignment)
    assert ev.valid
    assert ev.total == result.cost <= result.initial_cost == evaluate(inst, initial, initial).total
    assert result.cost < result.initial_cost
    assert result.seconds <= 3.5


@needs_shared
def test_search_is_repeatable_for_the_same_seed_when_the_work_is_capped():
    inst, initial = load(A1_1)
    params = SearchParams(lns_time_s=0.2)
    runs = [
        reassign(
            inst, initial, time_limit_s=60.0, seed=7, params=params, max_lns=15, max_la=200_000
        )
        for _ in range(2)
    ]
    assert np.array_equal(runs[0].assignment, runs[1].assignment)
    assert runs[0].cost == runs[1].cost


def test_search_keeps_the_initial_assignment_when_there_is_no_time():
    inst, initial = load(EXAMPLE)
    result = reassign(inst, initial, time_limit_s=0.0, seed=0)
    assert np.array_equal(result.assignment, initial)
    assert result.cost == result.initial_cost


def test_search_params_refuse_nonsense():
    with pytest.raises(ValueError):
        SearchParams(lns_machines=1)
    with pytest.raises(ValueError):
        SearchParams(lns_time_s=0)
    with pytest.raises(ValueError, match="settle_relocate_share"):
        SearchParams(settle_relocate_share=1.5)


def test_neighbourhood_over_the_whole_example_finds_its_optimum():
    inst, initial = load(EXAMPLE)
    state = State(inst, initial)
    assert solve_neighbourhood(state, [0, 1, 2, 3], [0, 1, 2], [], 5.0, 5.0, seed=0)
    assert state.cost == evaluate(inst, initial, state.assign).total == 2411


@needs_shared
def test_neighbourhoods_keep_every_rule_and_the_exact_cost_on_a1_4():
    inst, initial = load(A1_4)  # spread, dependencies, transient usage
    state = State(inst, initial)
    rng = np.random.default_rng(5)
    for _ in range(40):  # moved processes give the neighbourhoods processes to bring home
        p = int(rng.integers(inst.processes))
        ok = np.flatnonzero(np.isfinite(state.shift_deltas(p)))
        if len(ok):
            state.shift(p, int(rng.choice(ok)))
    improved = 0
    for _ in range(12):
        machines = rng.choice(inst.machines, 4, replace=False).tolist()
        on = np.flatnonzero(np.isin(state.assign, machines)).tolist()[:30]
        away = returners(state, machines, 6)
        before = state.cost
        improved += solve_neighbourhood(state, machines, on, away, 1.0, 1.0, seed=1)
        ev = evaluate(inst, initial, state.assign)
        assert ev.valid and ev.total == state.cost <= before
    assert improved


@pytest.mark.parametrize("path", [EXAMPLE, pytest.param(A1_4, marks=needs_shared)])
def test_annealing_returns_a_valid_state_no_costlier_than_its_start_when_the_moves_are_capped(
    path,
):
    inst, initial = load(path)
    start = State(inst, initial)
    # a local optimum as the start: annealing climbs out of it, and must still not end worse
    start, _ = descend(start, float("inf"), np.random.default_rng(0), 50, 0.0)
    out, stats = anneal(start, float("inf"), 3, max_moves=120_000)
    ev = evaluate(inst, initial, out.assign)
    assert ev.valid and ev.total == out.cost <= start.cost
    assert stats["anneal_tried"] == 120_000


@needs_shared
def test_annealing_from_the_initial_assignment_improves_a1_4():
    inst, initial = load(A1_4)
    out, _ = anneal(State(inst, initial), float("inf"), 1, max_moves=200_000)
    assert out.cost < State(inst, initial).cost
    assert evaluate(inst, initial, out.assign).total == out.cost


@needs_shared
def test_annealing_is_repeatable_for_the_same_seed_when_the_moves_are_capped():
    inst, initial = load(A1_4)
    runs = [anneal(State(inst, initial), float("inf"), 11, max_moves=150_000)[0] for _ in range(2)]
    assert np.array_equal(runs[0].assign, runs[1].assign)
    assert runs[0].cost == runs[1].cost
