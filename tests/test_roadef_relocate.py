"""Relocation with evictions: a process goes where it does not fit once that machine's
processes have made room; with transient resources, only a process that is not originally
there frees any (it goes home)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scheduler.solver.reassign import (
    Instance,
    State,
    assignment_path,
    evaluate,
    kernel,
    read_assignment,
    read_model,
)
from scheduler.solver.reassign import relocate as rl
from scheduler.solver.reassign.annealing import room_for
from scheduler.solver.reassign.local import (
    Compiled,
    anneal,
    descend,
    release,
    relocate_descend,
    room_ranks,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "roadef2012"
A1_4 = SHARED / "A" / "model_a1_4.txt"
A2_2 = SHARED / "A" / "model_a2_2.txt"  # transient resources
A2_5 = SHARED / "A" / "model_a2_5.txt"  # a big process on a machine with no safety capacity
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/roadef2012")
pytestmark = pytest.mark.usefixtures("roadef_kernel_compiled")


def small_instance(name: str, transient: bool, capacity, safety, requirement) -> Instance:
    """One resource (load weight 1), one location and neighbourhood, one process per service,
    no move costs: machines by ``capacity`` / ``safety``, processes by ``requirement``."""
    i64 = np.int64
    n_mach, n_proc = len(capacity), len(requirement)
    return Instance(
        name=name,
        transient=np.array([transient]),
        weight_load=np.array([1], i64),
        neighborhood=np.zeros(n_mach, i64),
        location=np.zeros(n_mach, i64),
        capacity=np.array(capacity, i64).reshape(-1, 1),
        safety=np.array(safety, i64).reshape(-1, 1),
        machine_move_cost=np.zeros((n_mach, n_mach), i64),
        spread_min=np.zeros(n_proc, i64),
        dependencies=(np.zeros(0, i64),) * n_proc,
        service=np.arange(n_proc, dtype=i64),
        requirement=np.array(requirement, i64).reshape(-1, 1),
        process_move_cost=np.zeros(n_proc, i64),
        balance=np.zeros((0, 3), i64),
        weight_balance=np.zeros(0, i64),
        weight_process_move=0,
        weight_service_move=0,
        weight_machine_move=0,
    )


def transient_instance() -> tuple[Instance, np.ndarray, np.ndarray]:
    """p (6, on A where every unit costs) fits by capacity on B, but B's one transient
    resource is held by r (2, originally there) and q (4, moved in from C): p fits once q
    goes home. C is too small for p. The initial assignment and the current one."""
    inst = small_instance("transient", True, [10, 10, 5], [0, 10, 5], [6, 4, 2])
    i64 = np.int64
    return inst, np.array([0, 2, 1], i64), np.array([0, 1, 1], i64)


def load(path: Path) -> tuple[Instance, np.ndarray]:
    inst = read_model(path)
    return inst, read_assignment(assignment_path(path), inst)


def members(c: Compiled, m: int) -> np.ndarray:
    return np.flatnonzero(c.assign == m).astype(np.int64)


def test_relocation_sends_a_moved_process_home_to_free_transient_room():
    inst, initial, current = transient_instance()
    state = State(inst, initial, current)
    assert state.cost == 6
    assert np.isinf(state.shift_deltas(0)[1:]).all()  # p fits nowhere as things are
    c = Compiled(state)
    out = np.zeros(rl.MAX_OUT + 2, dtype=np.int64)
    d = rl.relocate(c.md, c.st, 0, 1, members(c, 1), rl.MAX_OUT, -1, out)
    assert d == -6 and out[-1] == 2 and out[:2].tolist() == [1, 0]  # q home, then p in
    assert c.assign.tolist() == [1, 2, 1]
    ev = evaluate(inst, initial, c.assign)
    assert ev.valid and ev.total == 0 == c.cost


def test_relocation_with_sampled_destinations_still_sends_an_evictee_home():
    # the annealing prices an evictee on its home and a few random machines, not all: home
    # (where it holds its transient resources already) is always among them
    inst, initial, current = transient_instance()
    for seed in range(5):
        c = Compiled(State(inst, initial, current))
        rl.seed_kernel(seed)
        out = np.zeros(rl.MAX_OUT + 2, dtype=np.int64)
        d = rl.relocate(c.md, c.st, 0, 1, members(c, 1), rl.MAX_OUT, -1, out, 1)
        assert d == -6 and c.assign.tolist() == [1, 2, 1]


@pytest.mark.parametrize("tries", [0, 1])
def test_relocation_leaves_every_counter_as_it_was_when_refused(tries):
    inst, initial, current = transient_instance()
    c = Compiled(State(inst, initial, current))
    before = [a.copy() for a in c.st]
    out = np.zeros(rl.MAX_OUT + 2, dtype=np.int64)
    d = rl.relocate(c.md, c.st, 0, 1, members(c, 1), rl.MAX_OUT, -7, out, tries)
    assert d == kernel.INF
    assert all(np.array_equal(a, b) for a, b in zip(before, c.st, strict=True))


def test_relocation_pass_reaches_the_optimum_no_shift_can():
    inst, initial, current = transient_instance()
    c = Compiled(State(inst, initial, current))
    hold = rl.origin_hold(inst, initial)
    assert hold.tolist() == [[6], [2], [4]]
    made = rl.relocation_pass(c.md, c.st, hold, np.arange(3, dtype=np.int64), rl.MAX_OUT)
    assert made == 1 and c.cost == 0 and evaluate(inst, initial, c.assign).valid


@pytest.mark.parametrize(
    "path", [pytest.param(A1_4, marks=needs_shared), pytest.param(A2_2, marks=needs_shared)]
)
def test_relocations_keep_every_rule_and_the_exact_cost_of_the_evaluator(path):
    inst, initial = load(path)
    c = Compiled(State(inst, initial))
    rng = np.random.default_rng(4)
    out = np.zeros(rl.MAX_OUT + 2, dtype=np.int64)
    kept = 0
    for _ in range(300):  # any change accepted: the rules alone decide
        p, m = int(rng.integers(inst.processes)), int(rng.integers(inst.machines))
        d = rl.relocate(c.md, c.st, p, m, members(c, m), rl.MAX_OUT, kernel.INF - 1, out)
        kept += d != kernel.INF
    ev = evaluate(inst, initial, c.assign)
    assert kept and ev.valid and ev.total == c.cost
    assert c.state().cost == c.cost


@needs_shared
def test_relocation_rounds_improve_the_descent_and_repeat_for_the_same_seed():
    inst, initial = load(A1_4)
    climbed, _ = descend(State(inst, initial), float("inf"), np.random.default_rng(0), 300, 1e-3)
    runs = [
        relocate_descend(climbed, float("inf"), np.random.default_rng(1), 300, 1e-3)
        for _ in range(2)
    ]
    (first, stats), (second, _) = runs
    assert stats["relocations"] > 0 and first.cost < climbed.cost
    assert np.array_equal(first.assign, second.assign)
    ev = evaluate(inst, initial, first.assign)
    assert ev.valid and ev.total == first.cost


@needs_shared
@pytest.mark.parametrize("tries", [0, 16])
def test_annealing_with_relocations_keeps_every_rule_and_repeats_when_the_moves_are_capped(
    tries,
):
    inst, initial = load(A2_2)
    climbed, _ = descend(State(inst, initial), float("inf"), np.random.default_rng(0), 300, 1e-2)
    runs = [
        anneal(
            climbed,
            float("inf"),
            7,
            heat=1.0,
            relocate_share=0.2,
            relocate_tries=tries,
            max_moves=30_000,
        )
        for _ in range(2)
    ]
    (first, stats), (second, _) = runs
    assert stats["anneal_taken"] > 0 and first.cost <= climbed.cost
    assert np.array_equal(first.assign, second.assign)
    ev = evaluate(inst, initial, first.assign)
    assert ev.valid and ev.total == first.cost


def stuck_instance() -> tuple[Instance, np.ndarray]:
    """p (8) sits on A, where every unit costs (no safety capacity); it fits on B only once q
    (4) has gone to C (too small for p), and on D, which has no safety capacity either (a
    shift there saves nothing, and a relocation there would not free p's cost)."""
    inst = small_instance("stuck", False, [10, 10, 5, 10], [0, 10, 2, 0], [8, 4])
    i64 = np.int64
    return inst, np.array([0, 1], i64)


def test_release_relocates_a_process_stuck_on_a_machine_without_safety_capacity():
    inst, initial = stuck_instance()
    out, stats = release(State(inst, initial), 0.05, 0.25)
    assert stats == {"released": 1}
    assert out.assign.tolist() == [1, 2]  # p on B, q made room by going to C
    ev = evaluate(inst, initial, out.assign)
    assert ev.valid and ev.total == out.cost == 2


@needs_shared
def test_release_takes_a2_5s_big_process_off_the_machines_without_safety_capacity():
    inst, initial = load(A2_5)
    out, stats = release(State(inst, initial), 0.05, 0.25)
    zero = np.flatnonzero((inst.safety == 0).all(axis=1))
    assert initial[614] in zero and stats["released"] >= 1
    assert out.assign[614] not in zero
    ev = evaluate(inst, initial, out.assign)
    # a relocation may cost at once (the annealing re-packs around it), within its price
    assert ev.valid and ev.total == out.cost == State(inst, initial, out.assign).cost


def test_relocation_is_aimed_at_the_roomiest_machine_in_the_resource_the_process_costs_in():
    # two resources; p (on A) costs only in resource 1 there; B has most room in resource 0,
    # C in resource 1: the aimed machine is C (room ranks: one machine per resource)
    i64 = np.int64
    base = small_instance("aimed", False, [10, 10, 10], [5, 5, 5], [4, 1])
    inst = Instance(
        **{
            **base.__dict__,
            "transient": np.array([False, False]),
            "weight_load": np.array([1, 1], i64),
            "capacity": np.full((3, 2), 10, i64),
            "safety": np.array([[9, 2], [9, 5], [0, 9]], i64),
            "requirement": np.array([[1, 4], [1, 1]], i64),
        }
    )
    state = State(inst, np.array([0, 1], i64))
    c = Compiled(state)
    room = room_ranks(inst.safety, c.st[1], 1)
    assert room[:, 0].tolist() == [0, 2]  # resource 0: A (8 spare) ; resource 1: C (9)
    roomy = np.array([1], i64)
    assert {room_for(c.md, c.st, 0, roomy, room) for _ in range(20)} == {2}
    # p' (1 on B) costs nothing there: a machine of roomy
    assert room_for(c.md, c.st, 1, roomy, room) == 1
