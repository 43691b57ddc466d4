"""``valley bench roadef`` through the CLI on the specification's example."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from scheduler.bench.roadef import (
    canonical,
    command,
    find_models,
    keep_best,
    search_seed,
    solution_path,
)
from scheduler.solver.reassign import evaluate, read_assignment, read_model

DATA = Path(__file__).parent / "data" / "roadef"
EXAMPLE = DATA / "model_example.txt"
BEST = DATA / "best_known.csv"
pytestmark = pytest.mark.usefixtures("roadef_kernel_compiled")  # the 2 s runs are timed


def run(*args: str):
    return CliRunner().invoke(command, list(args), catch_exceptions=False)


def run_example_json(solutions: Path, *extra: str):
    """The example for 2 s against its best known cost, JSON out, solutions to ``solutions``."""
    return run(
        *("--instances", str(EXAMPLE), "--time-limit", "2", "--best-known", str(BEST)),
        *extra,
        *("--solutions", str(solutions), "--output", "json"),
    )


def test_json_rows_carry_the_instance_costs_bound_score_and_validity(tmp_path):
    out = run_example_json(tmp_path)
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert doc["suite"] == "roadef"
    assert doc["params"]["time_limit_s"] == 2.0
    (row,) = doc["rows"]
    for key in ("instance", "initial_cost", "cost", "lower_bound", "seconds", "valid"):
        assert key in row
    assert row["instance"] == "example"
    assert (row["initial_cost"], row["cost"], row["lower_bound"]) == (4200, 2411, 2411)
    assert row["valid"] is True
    assert row["seconds"] <= 2.5
    assert row["best_known"] == 2411 and row["score"] == 0.0
    assert row["gap_to_lower_bound"] == 0.0
    (summary,) = doc["params"]["summary"]
    assert summary["mean_score"] == 0.0 and summary["all_valid"] is True
    # the solution file, in the challenge's format, passes the evaluator
    inst = read_model(EXAMPLE)
    written = read_assignment(tmp_path / "solution_example.txt", inst)
    initial = read_assignment(DATA / "assignment_example.txt", inst)
    assert evaluate(inst, initial, written).total == 2411


def test_table_output_lists_the_instance_and_the_set_summary():
    out = run(str(EXAMPLE), "--time-limit", "1", "--best-known", str(BEST))
    assert out.exit_code == 0, out.output
    assert "suite roadef" in out.output
    assert "example" in out.output and "mean_score" in out.output


def test_malformed_model_fails_before_solving_naming_file_and_line(tmp_path):
    bad = tmp_path / "model_bad.txt"
    bad.write_text("2\n1 100\n0 x\n")
    (tmp_path / "assignment_bad.txt").write_text("0\n")
    out = CliRunner().invoke(command, ["--instances", str(bad)])
    assert out.exit_code != 0
    assert f"{bad}:3: expected an integer, got 'x'" in out.output


def test_folders_give_their_model_files_and_names_match_the_best_known_table():
    assert find_models([DATA]) == [EXAMPLE]
    assert canonical("b_01") == "b_1" and canonical("a1_2") == "a1_2"


def test_two_searches_run_with_their_own_seeds_and_leave_one_solution_file(tmp_path):
    out = run_example_json(tmp_path, "--searches", "2")
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert doc["params"]["searches"] == 2
    (row,) = doc["rows"]
    assert row["searches"] == 2 and len(row["search_costs"]) == 2
    assert row["cost"] == min(row["search_costs"]) == 2411 and row["all_searches_valid"]
    assert row["seconds"] <= 2.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["solution_example.txt"]


def test_search_seeds_differ_and_the_first_is_the_runs_own():
    assert search_seed(7, 0) == 7
    seeds = {search_seed(7, k) for k in range(8)} | {search_seed(8, k) for k in range(8)}
    assert len(seeds) == 16 and all(0 <= s < 2**63 for s in seeds)


def _search(cost: int, valid: bool = True, seconds: float = 1.0) -> dict:
    return {"instance": "x", "cost": cost, "valid": valid, "seconds": seconds, "seed": cost}


def test_the_cheapest_valid_search_is_kept_with_its_solution_file(tmp_path):
    for k, text in enumerate(["zero\n", "one\n", "two\n"]):
        solution_path(str(tmp_path), "x", k).write_text(text)
    rows = [_search(30, seconds=2.0), _search(20), _search(10, valid=False, seconds=3.0)]
    row = keep_best(rows, str(tmp_path))
    assert (row["cost"], row["seed"]) == (20, 20)
    assert row["search_costs"] == [30, 20, 10] and row["all_searches_valid"] is False
    assert row["seconds"] == 3.0  # they ran at once: the slowest one's
    assert [p.name for p in tmp_path.iterdir()] == ["solution_x.txt"]
    assert (tmp_path / "solution_x.txt").read_text() == "one\n"


def test_when_no_search_is_valid_the_first_ones_row_and_file_stay(tmp_path):
    for k in range(2):
        solution_path(str(tmp_path), "x", k).write_text(f"{k}\n")
    row = keep_best([_search(30, valid=False), _search(20, valid=False)], str(tmp_path))
    assert row["cost"] == 30 and row["valid"] is False
    assert (tmp_path / "solution_x.txt").read_text() == "0\n"
    assert [p.name for p in tmp_path.iterdir()] == ["solution_x.txt"]
