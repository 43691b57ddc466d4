"""``valley bench day``: a short simulated day through the real loop for every policy, the
arrival generator's statistics, and the accounting and time checker on hand-checkable cases."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from scheduler.bench.checker import check_over_time
from scheduler.bench.cli import bench
from scheduler.bench.day import POLICIES, REBALANCED, SimClock, run
from scheduler.bench.day_account import (
    KINDS,
    Rates,
    deferrable_floor,
    ledger,
    per_hour,
    runs_of,
    scenario_rates,
    segments,
    timing,
)
from scheduler.bench.day_arrivals import (
    DEFERRABLE_SHARE,
    START,
    arrival_stats,
    generate_arrivals,
)
from scheduler.domain import (
    Cluster,
    ReplicaPlacement,
    Resources,
    Scenario,
    Workload,
    WorkloadKind,
    WorkloadSpec,
    WorkloadState,
)
from scheduler.loop import LoopConfig, SchedulingLoop
from scheduler.store import open_store

FIELDS = (
    "policy",
    "hours",
    "energy_cny",
    "carbon_kg",
    "deferrable_energy_cny",
    "deferrable_carbon_kg",
    "deferrable_carbon_floor_kg",
    "deferrable_energy_floor_cny",
    "deadline_misses",
    "slo_violations",
    "violations",
    "placed",
    "mean_deferral_s",
)


@pytest.fixture(scope="module")
def short_day() -> list[dict]:
    rows, _ = run(POLICIES, hours=6, per_day=1200, seed=1, time_limit=0.2)
    return rows


def test_every_policy_reports_the_fields_and_breaks_no_rule_when_a_short_day_runs(short_day):
    assert [r["policy"] for r in short_day] == list(POLICIES)
    for row in short_day:
        where = row["policy"]
        assert all(field in row for field in FIELDS), where
        assert row["hours"] == 6
        assert row["slo_violations"] == 0, where
        assert row["violations"] == 0, (where, row["violation_rules"], row["violation_examples"])
        assert row["deadline_misses"] == 0, where
        assert 0 < row["placed"] <= row["arrivals"], where
        assert row["pending_at_end"] == 0, where
        assert 0 < row["deferrable_energy_cny"] < row["energy_cny"], where
        assert 0 < row["deferrable_carbon_kg"] < row["carbon_kg"], where
        assert row["mean_deferral_s"] >= 0, where


def test_no_policy_beats_the_deferrable_floor_when_every_deadline_is_met(short_day):
    for row in short_day:
        assert row["deadline_misses"] == 0
        assert 0 < row["deferrable_carbon_floor_kg"] <= row["deferrable_carbon_kg"] + 1e-9
        assert 0 < row["deferrable_energy_floor_cny"] <= row["deferrable_energy_cny"] + 1e-9


def test_every_policy_gets_the_same_arrivals_and_floor(short_day):
    assert len({r["arrivals_digest"] for r in short_day}) == 1
    assert len({r["arrivals"] for r in short_day}) == 1
    assert len({r["deferrable_carbon_floor_kg"] for r in short_day}) == 1


def test_the_kinds_of_work_add_up_to_the_cluster_hour_by_hour(short_day):
    for row in short_day:
        total = sum(
            sum(sum(series) for series in row["hourly"][site]["carbon_kg"].values())
            for site in row["hourly"]
        )
        assert total == pytest.approx(row["carbon_kg"], rel=1e-3)
        assert set(row["hourly"]["etown"]["power_kw"]) == set(KINDS)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_arrivals_hold_their_stated_distributions_whatever_the_seed(seed):
    arrivals = generate_arrivals(48, 2000, seed)
    stats = arrival_stats(arrivals, 48)
    assert stats["per_day"] == pytest.approx(2000, rel=0.05)
    assert stats["deferrable_share_of_batch"] == pytest.approx(DEFERRABLE_SHARE, abs=0.05)
    assert 2.0 <= stats["slack_h_min"] < 2.5
    assert 23.5 < stats["slack_h_max"] <= 24.0
    # the daytime peak: 1.5x the mean at 14:00, 0.5x at 02:00
    assert 11 <= stats["busiest_hour"] <= 17
    assert stats["peak_to_trough"] > 2.0
    assert [a.at_s for a in arrivals] == sorted(a.at_s for a in arrivals)
    assert all(0 <= a.at_s < 48 * 3600 for a in arrivals)
    for a in arrivals:
        assert a.spec.duration_s > 0
        if a.deferrable:
            assert a.spec.kind == WorkloadKind.BATCH
        else:
            assert a.spec.deadline is None


def test_the_same_seed_gives_the_same_arrivals():
    assert generate_arrivals(3, 500, 4) == generate_arrivals(3, 500, 4)
    assert generate_arrivals(3, 500, 4) != generate_arrivals(3, 500, 5)


def test_json_rows_and_a_png_when_asked_on_the_command_line(tmp_path: Path):
    png = tmp_path / "day.png"
    args = ["day", "--hours", "2", "--arrivals-per-day", "600", "--policies", "valley,kube"]
    args += ["--output", "json", "--plot", str(png), "--seed", "3"]
    result = CliRunner().invoke(bench, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["suite"] == "day"
    assert out["params"]["hours"] == 2 and out["params"]["seed"] == 3
    assert [r["policy"] for r in out["rows"]] == ["valley", "kube"]
    assert all(field in r for r in out["rows"] for field in FIELDS)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_unknown_policy_is_refused():
    result = CliRunner().invoke(bench, ["day", "--policies", "valley,nope"])
    assert result.exit_code != 0
    assert "nope" in result.output


# --------------------------------------------------------------------------- by hand


def test_per_hour_splits_an_interval_at_hour_boundaries():
    # 1 W from 0:30 to 3:15, and 2 W within hour 1
    got = per_hour(np.array([1800.0, 4000.0]), np.array([11700.0, 5000.0]), np.array([1.0, 2.0]), 4)
    assert got.tolist() == pytest.approx([1800.0, 3600.0 + 2000.0, 3600.0, 900.0])
    # after the last run, an hour reads exactly 0 (no rounding left of the running sums)
    rng = np.random.default_rng(0)
    starts = rng.uniform(0, 5 * 3600, 1000)
    late = per_hour(starts, starts + rng.uniform(1, 9 * 3600, 1000), rng.uniform(0, 1e4, 1000), 20)
    assert (late[15:] == 0.0).all() and (late[:14] > 0).all()


def _placed(spec: WorkloadSpec, node: str, site: str, at_h: float, start_h: float | None = None):
    placed_at = START + timedelta(hours=at_h)
    start = None if start_h is None else START + timedelta(hours=start_h)
    rp = ReplicaPlacement(0, site, node, start_time=start)
    return Workload(
        f"w-{node}-{at_h}-{start_h}",
        spec,
        WorkloadState.COMPLETED,
        (rp,),
        created_at=placed_at,
        placed_at=placed_at,
    )


def _flat_rates(tiny: Scenario, hours: int) -> Rates:
    return scenario_rates(tiny, START, hours, seed=None)


def test_a_node_draws_its_idle_power_once_while_any_replica_runs_on_it(tiny: Scenario):
    cluster = Cluster(tiny)
    half = WorkloadSpec(tenant="t", resources=Resources(2000, 1024), duration_s=7200)
    node = tiny.site("near").pools[0].node_name(0)
    # two half-node replicas: 0-2 h and 1-3 h; the node is awake 0-3 h
    ws = [_placed(half, node, "near", 0.0), _placed(half, node, "near", 1.0)]
    book = ledger(runs_of(ws, cluster, START), cluster, _flat_rates(tiny, 4))
    # per replica: dynamic (300 - 100) x 1/2 = 100 W for 2 h; idle 100 W for 3 h
    it_kwh = (2 * 100 * 2 + 100 * 3) / 1000.0
    kwh, cny, kg = book.total()
    assert kwh == pytest.approx(it_kwh * 1.5)  # near's PUE
    assert cny == pytest.approx(it_kwh * 1.5 * 1.0)
    assert kg == pytest.approx(it_kwh * 1.5 * 0.6)
    # each replica is charged half the idle power while it runs; the rest is "idle"
    assert book.total("batch")[0] == pytest.approx((2 * 150 * 2) / 1000.0 * 1.5)
    assert book.total("idle")[0] == pytest.approx((100 * 3 - 2 * 50 * 2) / 1000.0 * 1.5)


def test_a_replica_with_a_start_time_draws_from_then(tiny: Scenario):
    cluster = Cluster(tiny)
    spec = WorkloadSpec(tenant="t", resources=Resources(4000, 1024), duration_s=3600)
    node = tiny.site("green").pools[0].node_name(0)
    book = ledger(
        runs_of([_placed(spec, node, "green", 0.0, start_h=5.0)], cluster, START),
        cluster,
        _flat_rates(tiny, 8),
    )
    hourly = book.kwh.sum(axis=(0, 1))
    assert np.flatnonzero(hourly).tolist() == [5]
    assert hourly[5] == pytest.approx(0.3 * 1.1)  # a full node: 300 W, PUE 1.1


def _one_hour_job(cpu_millis: int, deadline_h: float) -> WorkloadSpec:
    return WorkloadSpec(
        tenant="t",
        resources=Resources(cpu_millis, 1024),
        kind=WorkloadKind.BATCH,
        duration_s=3600,
        deadline=START + timedelta(hours=deadline_h),
    )


def test_the_floor_takes_each_deferrable_job_at_its_cheapest_hour_and_site(tiny: Scenario):
    rates = _flat_rates(tiny, 30)
    rates.carbon[1, :] = 0.3
    rates.carbon[1, 10] = 0.1  # green is greenest from 10:00 to 11:00
    cny, kg = deferrable_floor([(0.0, _one_hour_job(4000, 20.0))], tiny, rates, START)
    watts = 300.0  # a whole 4-core node of either site: 200 W dynamic + 100 W idle
    assert kg == pytest.approx(watts / 1000.0 * 1.1 * 0.1)
    assert cny == pytest.approx(watts / 1000.0 * 1.1 * 0.5)
    # a deadline before 10:00 leaves the green hour out of reach
    _, kg_early = deferrable_floor([(0.0, _one_hour_job(4000, 10.5))], tiny, rates, START)
    assert kg_early == pytest.approx(watts / 1000.0 * 1.1 * (0.5 * 0.3 + 0.5 * 0.1))


def test_a_deferrable_job_ending_after_its_deadline_is_a_miss():
    spec = _one_hour_job(1000, 3.0)
    on_time = _placed(spec, "n", "s", 0.0, start_h=2.0)
    late = _placed(spec, "n", "s", 0.0, start_h=2.5)
    assert timing([on_time], START) == {
        "deferrable": 1,
        "deadline_misses": 0,
        "mean_deferral_s": 7200.0,
    }
    assert timing([late], START)["deadline_misses"] == 1
    unplaced = Workload("u", spec, WorkloadState.PENDING, created_at=START)
    assert timing([unplaced], START)["deadline_misses"] == 1


def test_the_time_checker_allows_a_node_reused_later_and_flags_an_overlap(tiny: Scenario):
    full = WorkloadSpec(tenant="t", resources=Resources(4000, 1024))
    node = tiny.site("near").pools[0].node_name(0)
    specs = {"a": full, "b": full}
    placements = {
        "a": (ReplicaPlacement(0, "near", node, 1.0),),
        "b": (ReplicaPlacement(0, "near", node, 1.0),),
    }
    after = {"a": [(0.0, 10.0)], "b": [(10.0, 20.0)]}
    assert check_over_time(tiny, specs, placements, after) == []
    overlap = {"a": [(0.0, 10.0)], "b": [(9.0, 20.0)]}
    assert [v.rule for v in check_over_time(tiny, specs, placements, overlap)] == ["cpu"]


def test_run_cycle_runs_one_cycle_on_a_simulated_clock_completions_included(
    tiny: Scenario, tmp_path: Path
):
    store = open_store(f"sqlite:///{tmp_path}/v.db")
    clock = SimClock(START)
    loop = SchedulingLoop(store, tiny, config=LoopConfig(solver_process=False), clock=clock)
    loop.load()
    spec = WorkloadSpec(tenant="t", resources=Resources(1000, 64), duration_s=600)
    (w,) = store.submit("", "", [spec], clock.now).workloads
    loop.submitted([w])
    loop.run_cycle()
    placed = store.get(w.id)
    assert placed.state == WorkloadState.PLACED and placed.placed_at == START
    clock.now = START + timedelta(seconds=599)
    loop.run_cycle()
    assert store.get(w.id).state == WorkloadState.PLACED
    clock.now = START + timedelta(seconds=600)
    loop.run_cycle()
    assert store.get(w.id).state == WorkloadState.COMPLETED
    assert loop.snapshot().cluster.free_cpu.sum() == Cluster(tiny).free_cpu.sum()
    store.close()


def test_the_time_checker_flags_a_gpu_shared_past_whole_only_while_both_hold_it(
    tiny: Scenario,
):
    node = tiny.site("green").pools[1].node_name(0)
    specs = {
        "whole": WorkloadSpec(tenant="t", resources=Resources(1000, 1024, gpus=1)),
        "share": WorkloadSpec(tenant="t", resources=Resources(1000, 1024, gpu_millis=600)),
        "other": WorkloadSpec(tenant="t", resources=Resources(1000, 1024, gpu_millis=600)),
    }
    placements = {wid: (ReplicaPlacement(0, "green", node, 1.0, (0,)),) for wid in specs}
    apart = {"whole": [(0.0, 1.0)], "share": [(1.0, 2.0)], "other": [(1.5, 3.0)]}
    rules = [v.rule for v in check_over_time(tiny, specs, placements, apart)]
    assert rules == ["gpu_share"]  # share and other overlap in 1.5..2: 1200 millis
    apart["other"] = [(2.0, 3.0)]
    assert check_over_time(tiny, specs, placements, apart) == []
    apart["share"] = [(0.5, 2.0)]
    assert [v.rule for v in check_over_time(tiny, specs, placements, apart)] == ["gpu_exclusive"]


def test_policies_run_in_processes_give_the_rows_of_one_process():
    # kube and cheapest-first decide the same whatever the machine's speed
    args = {"hours": 2, "per_day": 600, "seed": 2}
    one, _ = run(["kube", "cheapest-first"], **args)
    two, _ = run(["kube", "cheapest-first"], jobs=2, **args)
    keys = ("policy", "arrivals_digest", "placed", "energy_cny", "carbon_kg", "violations")
    assert [[r[k] for k in keys] for r in one] == [[r[k] for k in keys] for r in two]


def test_a_moved_replica_draws_on_each_node_for_the_time_it_ran_there(tiny: Scenario):
    cluster = Cluster(tiny)
    job = WorkloadSpec(tenant="t", resources=Resources(2000, 1024), duration_s=3 * 3600)
    near, green = "near/cpu-0000", "green/cpu-0000"
    final = _placed(job, green, "green", 0.0)  # on green at the end
    before = (ReplicaPlacement(0, "near", near),)
    moves = {final.id: [(START + timedelta(hours=1), before)]}  # moved near -> green at 1 h
    parts, spans = segments([final], moves, START)
    book = ledger(runs_of(parts, cluster, START, spans), cluster, _flat_rates(tiny, 4))
    # 1 h on near (PUE 1.5, 1 CNY/kWh), 2 h on green (PUE 1.1, 0.5 CNY/kWh): 100 W + 100 W idle
    near_kwh, green_kwh = 0.2 * 1 * 1.5, 0.2 * 2 * 1.1
    kwh, cny, _ = book.total()
    assert kwh == pytest.approx(near_kwh + green_kwh)
    assert cny == pytest.approx(near_kwh * 1.0 + green_kwh * 0.5)


def test_a_rebalanced_short_day_moves_replicas_and_breaks_no_rule():
    rows, _ = run(
        ("valley", REBALANCED), hours=6, per_day=1200, seed=1, time_limit=0.2, floor_every_h=2
    )
    by = {r["policy"]: r for r in rows}
    for r in rows:  # no placement of the work running at a sample beats its floor
        assert r["floor_samples"] == 3, r["policy"]
        assert 0 <= r["above_floor_best"] <= r["above_floor_mean"] <= r["above_floor_worst"]
    moved = by[REBALANCED]
    assert moved["violations"] == 0, moved["violation_examples"]
    assert moved["slo_violations"] == 0 and moved["deadline_misses"] == 0
    assert moved["placed"] == by["valley"]["placed"]
    assert by["valley"]["moved_replicas"] == 0
    assert moved["moved_replicas"] > 0
    assert moved["energy_vs_valley"] is not None


def test_rebalance_adds_the_rebalanced_policy_and_the_floor_comparison():
    args = ["day", "--hours", "2", "--arrivals-per-day", "600", "--policies", "kube"]
    result = CliRunner().invoke(bench, [*args, "--rebalance", "--output", "json"])
    assert result.exit_code == 0, result.output
    rows = {r["policy"]: r for r in json.loads(result.output)["rows"]}
    assert set(rows) == {"kube", REBALANCED}
    # every 6 simulated hours by default with --rebalance: none within 2 hours
    assert all(r["floor_samples"] == 0 and r["above_floor_mean"] is None for r in rows.values())
    plain = CliRunner().invoke(bench, [*args, "--floor-every-h", "1", "--output", "json"])
    (kube,) = json.loads(plain.output)["rows"]
    assert kube["floor_samples"] == 2 and kube["above_floor_best"] >= 0
