"""The vbp suite: the .vbp and reference readers and a toy run through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from scheduler.bench.vbp import (
    VbpFormatError,
    command,
    find_instances,
    limit_per_group,
    read_reference,
    read_vbp,
)

DATA = Path(__file__).parent / "data" / "vbp"
REFERENCE = DATA / "tiny_summary_known.csv"


def test_read_vbp_expands_multiplicities():
    inst = read_vbp(DATA / "classT_4_2_0.vbp")
    assert inst.capacity.tolist() == [10, 10]
    assert inst.items.tolist() == [[6, 1], [1, 6], [4, 4], [4, 4]]
    assert (inst.family, inst.dimension) == ("classT", 2)


def test_read_vbp_takes_the_item_count_from_the_file_not_the_name():
    # named for 4 items, holds 5 (like the Panigrahy class 9 files)
    assert len(read_vbp(DATA / "classT_4_1_0.vbp").items) == 5


def test_read_vbp_skips_blank_lines():
    assert len(read_vbp(DATA / "classT_7_2_1.vbp").items) == 6


def test_malformed_vbp_fails_with_file_line_and_reason():
    path = DATA / "bad" / "classT_3_3_0.vbp"
    with pytest.raises(VbpFormatError) as err:
        read_vbp(path)
    assert (err.value.path, err.value.line) == (str(path), 5)
    assert "3 sizes and a multiplicity (4 numbers), got 3" in err.value.reason


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("", 1, "empty file"),
        ("2\n10 10\n2\n1 1 1\n", 5, "unexpected end of file"),
        ("2\n10 x\n", 2, "expected integers"),
        ("1\n10\n1\n11 1\n", 4, "exceeds the capacity"),
        ("1\n10\n1\n1 1\n1 1\n", 5, "extra line"),
    ],
)
def test_vbp_format_errors(tmp_path, text, line, reason):
    path = tmp_path / "x.vbp"
    path.write_text(text)
    with pytest.raises(VbpFormatError) as err:
        read_vbp(path)
    assert err.value.line == line
    assert reason in err.value.reason


def test_read_reference_and_its_target():
    refs = read_reference(REFERENCE)
    assert refs["classT_4_1_0"].target == 3  # the optimum
    assert refs["classT_7_2_1"].target == 3  # no optimum: the lower bound
    assert refs["classT_7_2_1"].benchmark == "tiny"
    with pytest.raises(VbpFormatError) as err:
        read_reference(DATA / "bad_summary.csv")
    assert err.value.line == 2


def test_limit_keeps_n_instances_per_class_and_dimension_spread_over_sizes():
    files = [Path(f"class1_{n}_3_{i}.vbp") for n in (20, 40, 60) for i in range(3)]
    files += [Path("class1_20_5_0.vbp")]
    picked = limit_per_group(files, 2)
    assert [p.stem for p in picked] == ["class1_20_3_0", "class1_20_5_0", "class1_60_3_2"]


def test_toy_run_through_the_cli_reports_consistent_numbers(tmp_path):
    plot = tmp_path / "vbp.png"
    res = CliRunner().invoke(
        command,
        [
            str(DATA / "classT_4_2_0.vbp"), str(DATA / "classT_4_1_0.vbp"),
            "--instances", str(DATA / "classT_7_2_1.vbp"), "--reference", str(REFERENCE),
            "--time-limit", "2", "--output", "json", "--plot", str(plot),
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["suite"] == "vbp" and doc["params"]["instances"] == 3
    rows = doc["rows"]
    assert {r["policy"] for r in rows} == {"valley", "ffd"}
    for r in rows:
        assert r["mean_ratio_to_opt"] >= 1.0
        assert 0.0 <= r["share_optimal"] <= 1.0
        assert r["reference_best_ratio"] >= 1.0
    total = {r["policy"]: r for r in rows if r["class"] == "all"}
    assert total["valley"]["instances"] == 3
    # every toy instance is solved to its optimum (or lower bound) by valley
    assert total["valley"]["share_optimal"] == 1.0
    assert total["valley"]["mean_ratio_to_opt"] == 1.0
    assert total["ffd"]["mean_ratio_to_opt"] >= 1.0
    assert plot.stat().st_size > 0


def test_a_malformed_instance_stops_the_cli_before_solving():
    res = CliRunner().invoke(
        command, ["--instances", str(DATA / "bad"), "--reference", str(REFERENCE)]
    )
    assert res.exit_code != 0
    assert "classT_3_3_0.vbp:5:" in res.output


def test_find_instances_rejects_a_missing_path(tmp_path):
    with pytest.raises(Exception, match="no such file"):
        find_instances([tmp_path / "nothing"])


def test_two_runs_give_the_same_bins_instance_by_instance(tmp_path):
    # a 40-item instance that no simple bound closes: the searches run on their work limit
    rng = np.random.default_rng(0)
    items = rng.integers(5, 60, size=(40, 3))
    inst = tmp_path / "classR_40_3_0.vbp"
    inst.write_text("3\n100 100 100\n40\n" + "".join(f"{a} {b} {c} 1\n" for a, b, c in items))
    ref = tmp_path / "R_summary_known.csv"
    ref.write_text("instance_name\tLB\tOPT\tbest_overall\nclassR_40_3_0\t13\t-1\t20\n")
    details = []
    for run in range(2):
        path = tmp_path / f"details{run}.json"
        args = [str(inst), "--reference", str(ref), "--time-limit", "0.5", "--output", "json"]
        res = CliRunner().invoke(command, [*args, "--wall-limit", "30", "--details", str(path)])
        assert res.exit_code == 0, res.output
        doc = json.loads(res.stdout)
        assert doc["params"]["wall_limit_s"] == 30
        assert all(r["share_wall_capped"] == 0.0 for r in doc["rows"])
        details.append(json.loads(path.read_text()))
    assert [(d["name"], d["policy"]) for d in details[0]] == [
        ("classR_40_3_0", "valley"),
        ("classR_40_3_0", "ffd"),
    ]
    assert [d["bins"] for d in details[0]] == [d["bins"] for d in details[1]]
    assert [d["work"] for d in details[0]] == [d["work"] for d in details[1]]
