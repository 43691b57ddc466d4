"""The ``scenario`` suite at toy size through the CLI, and the workload mix it runs on."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from scheduler.bench.cli import bench
from scheduler.bench.scenario import is_latency_critical, scaled_scenario
from scheduler.bench.workload_mix import (
    CORE_SHARES,
    SHAPES_FILE,
    derive_shapes,
    describe,
    generate_mix,
    load_shapes,
)
from scheduler.domain import Topology
from scheduler.solver import POLICIES

TRACE = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "openb" / "openb_pod_list_default.csv"
)


@pytest.fixture(scope="module")
def toy_run() -> dict:
    args = ["scenario", "--replicas", "80", "--replicas", "150", "--seed", "3"]
    args += ["--time-limit", "0.5", "--hour", "18", "--output", "json"]
    result = CliRunner().invoke(bench, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_suite_emits_one_row_per_policy_and_size(toy_run):
    assert toy_run["suite"] == "scenario"
    assert toy_run["params"]["hour"] == 18
    assert toy_run["params"]["seed"] == 3
    assert toy_run["params"]["time_limit_s"] == 0.5
    assert sorted((r["replicas"], r["policy"]) for r in toy_run["rows"]) == sorted(
        (n, p) for n in (80, 150) for p in POLICIES
    )


def test_every_policy_places_no_more_than_asked_and_breaks_no_rule(toy_run):
    for row in toy_run["rows"]:
        where = f"{row['policy']} at {row['replicas']}"
        assert 0 < row["placed"] <= row["replicas"], where
        assert 0 <= row["placed_critical"] <= row["critical"] <= row["replicas"], where
        assert row["workloads_placed"] <= row["workloads"], where
        assert row["slo_violations"] == 0, where
        assert row["violations"] == 0, (where, row["violation_rules"])


def test_suite_numbers_are_consistent(toy_run):
    for row in toy_run["rows"]:
        where = f"{row['policy']} at {row['replicas']}"
        assert row["energy_cny_per_hour"] > 0 and row["carbon_kg_per_hour"] > 0, where
        assert math.isclose(row["objective"], row["objective_recomputed"], rel_tol=1e-9), where
        assert 1.0 <= row["mean_service_rtt_ms"] <= 4.0, where  # between E-Town's and Zhangbei's
        assert 0 <= row["service_replicas_sharing_a_rack"] < row["placed"], where
        assert 0.0 <= row["etown_share_of_flexible"] <= 1.0, where
        assert row["rss_mib"] > 0, where
        if row["policy"] == "kube":
            assert row["energy_vs_kube"] == 0.0 and row["carbon_vs_kube"] == 0.0


def test_valley_reports_a_bound_no_greater_than_its_objective(toy_run):
    rows = [r for r in toy_run["rows"] if r["policy"] == "valley"]
    assert rows
    for row in rows:
        assert row["bound"] is not None
        assert row["bound"] <= row["objective"] * (1 + 1e-9) + 1e-9
        assert 0.0 <= row["gap"] <= 1.0
    for row in toy_run["rows"]:
        if row["policy"] != "valley":
            assert row["bound"] is None and row["gap"] is None


def test_floors_are_below_every_policy_that_places_all_the_work(toy_run):
    for row in toy_run["rows"]:
        where = f"{row['policy']} at {row['replicas']}"
        energy, carbon = row["energy_floor_cny_per_hour"], row["carbon_floor_kg_per_hour"]
        assert energy is not None and carbon is not None, where
        assert energy > 0 and carbon > 0, where
        if row["placed"] == row["replicas"]:
            assert energy <= row["energy_cny_per_hour"] * (1 + 1e-9), where
            assert carbon <= row["carbon_kg_per_hour"] * (1 + 1e-9), where


def test_table_output_prints_the_hour_and_the_plot_is_a_png(tmp_path):
    png = tmp_path / "scenario.png"
    args = ["scenario", "--replicas", "60", "--policies", "kube,cheapest-first", "--hour", "3"]
    result = CliRunner().invoke(bench, [*args, "--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert "hour=3" in result.output
    assert "cheapest-first" in result.output and "kube" in result.output
    assert "floors at 60 replicas" in result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_policy_is_refused():
    result = CliRunner().invoke(bench, ["scenario", "--replicas", "10", "--policies", "kube,nope"])
    assert result.exit_code != 0
    assert "nope" in result.output


# --------------------------------------------------------------------------- the mix


@pytest.mark.parametrize("replicas", [1, 7, 100, 2500])
def test_mix_has_exactly_the_replicas_asked_for(replicas):
    mix = generate_mix(replicas, seed=5)
    assert sum(w.spec.replica_count for w in mix) == replicas
    assert len({w.id for w in mix}) == len(mix)


def test_mix_is_deterministic_for_a_seed_and_differs_between_seeds():
    assert generate_mix(500, seed=11) == generate_mix(500, seed=11)
    assert generate_mix(500, seed=11) != generate_mix(500, seed=12)


def test_mix_specs_are_valid_for_the_default_scenario(beijing_hebei):
    for w in generate_mix(3000, seed=2):
        w.spec.validate(beijing_hebei, w.id)


def test_mix_tracks_the_core_shares_of_the_scenario():
    d = describe(generate_mix(10_000, seed=4))
    share = {g: 0.0 for g in CORE_SHARES}
    for cls, v in d.items():
        share["gpu" if cls.startswith("gpu") else cls] += v["core_share"]
    for group, target in CORE_SHARES.items():
        assert abs(share[group] - target) < 0.03, (group, share[group])
    # all GPUs in the GPU classes, both whole and fractional ones
    assert d["gpu-training"]["gpus"] > 0 and d["gpu-inference"]["gpus"] > 0


def test_mix_has_the_constraints_a_realistic_load_has(beijing_hebei):
    mix = generate_mix(5000, seed=1)
    specs = [w.spec for w in mix]
    critical = [s for s in specs if is_latency_critical(beijing_hebei, s)]
    assert critical and all(s.labels["class"] == "interactive" for s in critical)
    assert any(s.topology == Topology.GANG for s in specs)
    assert any(s.topology == Topology.SPREAD and s.min_sites == 2 for s in specs)
    assert any(s.allowed_sites for s in specs)
    assert any(s.gpu_models for s in specs)
    assert any(s.deadline is not None for s in specs)
    assert len({s.priority for s in specs}) >= 3
    counts = [s.replica_count for s in specs]
    assert sum(c <= 3 for c in counts) > len(counts) / 2
    assert any(c >= 10 for c in counts)
    fractional = [s for s in specs if s.resources.gpu_millis]
    whole = [s for s in specs if s.resources.gpus]
    assert fractional and whole
    # services look like services: no more than 8 cores a replica
    assert (
        max(s.resources.cpu_millis for s in specs if s.is_service and not s.resources.wants_gpu)
        <= 8000
    )


def test_scaled_scenario_puts_critical_demand_near_90_percent_of_etown(beijing_hebei):
    mix = generate_mix(10_000, seed=0)
    scaled = scaled_scenario(beijing_hebei, mix, load=0.5, critical_share=0.9)
    etown = next(p for p in scaled.pools if p.key == "etown/cpu")
    crit = [w.spec for w in mix if is_latency_critical(beijing_hebei, w.spec)]
    cpu = sum(s.resources.cpu_millis * s.replica_count for s in crit)
    mem = sum(s.resources.memory_mib * s.replica_count for s in crit)
    dominant = max(
        cpu / (etown.count * etown.node.cpu_millis), mem / (etown.count * etown.node.memory_mib)
    )
    assert 0.85 <= dominant <= 0.9
    cpu_pools = [p for p in scaled.pools if not p.node.gpus]
    total_cpu = sum(
        w.spec.resources.cpu_millis * w.spec.replica_count
        for w in mix
        if not w.spec.resources.wants_gpu
    )
    capacity = sum(p.count * p.node.cpu_millis for p in cpu_pools)
    assert 0.35 <= total_cpu / capacity <= 0.5


def test_shipped_shapes_table_is_the_trace_derivation():
    if not TRACE.exists():
        pytest.skip(f"trace not available at {TRACE}")
    shipped = load_shapes(SHAPES_FILE)
    assert shipped == derive_shapes(TRACE)
    assert sum(s.count for s in shipped) == 8152
    # a full pod list passed as --shapes reads the same
    assert load_shapes(TRACE) == shipped


def test_valley_runs_without_the_repairs_left_out_and_says_which_ran():
    args = ["scenario", "--replicas", "120", "--policies", "valley", "--no-floors"]
    args += ["--time-limit", "0.5", "--output", "json"]
    without = CliRunner().invoke(bench, [*args, "--repairs", "none"])
    assert without.exit_code == 0, without.output
    report = json.loads(without.output)
    assert report["params"]["repairs"] == []
    (row,) = report["rows"]
    assert row["repairs_applied"] == [] and row["violations"] == 0
    assert row["bound_source"] in ("lp", "mip", "cpsat")


def test_an_unknown_repair_is_refused_by_name():
    result = CliRunner().invoke(bench, ["scenario", "--replicas", "10", "--repairs", "tidy"])
    assert result.exit_code != 0
    assert "tidy" in result.output and "consolidate" in result.output


def test_several_seeds_run_in_one_go_and_are_summarised_with_mean_and_worst(tmp_path):
    png = tmp_path / "seeds.png"
    args = ["scenario", "--replicas", "80", "--seeds", "3", "--policies", "valley,kube"]
    args += ["--no-floors", "--time-limit", "0.3", "--output", "json", "--plot", str(png)]
    result = CliRunner().invoke(bench, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[: result.output.rindex("}") + 1])
    assert sorted({r["seed"] for r in report["rows"]}) == [0, 1, 2]
    by = {s["policy"]: s for s in report["summary"]}
    assert by["valley"]["seeds"] == 3
    gaps = [r["gap"] for r in report["rows"] if r["policy"] == "valley"]
    assert by["valley"]["gap_worst"] == max(gaps)
    assert by["valley"]["gap_mean"] == pytest.approx(sum(gaps) / 3)
    energy = [r["energy_vs_kube"] for r in report["rows"] if r["policy"] == "valley"]
    assert by["valley"]["energy_vs_kube_worst"] == max(energy)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_default_spread_is_on_unless_turned_off_and_each_run_keeps_its_own_rule():
    args = ["scenario", "--replicas", "150", "--policies", "valley,kube", "--no-floors"]
    args += ["--time-limit", "0.5", "--output", "json"]
    runs = {}
    for flag in ("", "--no-default-spread"):
        result = CliRunner().invoke(bench, [*args, flag] if flag else args)
        assert result.exit_code == 0, result.output
        runs[flag] = json.loads(result.output)
    assert runs[""]["params"]["default_spread"] is True
    assert runs["--no-default-spread"]["params"]["default_spread"] is False
    # the checker holds each run to its own rule: with the default, services spread
    for report in runs.values():
        assert all(r["violations"] == 0 for r in report["rows"]), report["rows"]
