"""Metrics from the real scheduling loop (SQLite store, real solver, tiny scenario), scraped over
HTTP: observer counters and histograms, snapshot gauges checked by hand, naming checked by
``promtool check metrics``, and the registration rules several servers in one process need."""

from __future__ import annotations

import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from scheduler import __version__, metrics
from scheduler.domain import Resources, Scenario, Workload, WorkloadKind, WorkloadSpec
from scheduler.domain import WorkloadState as S
from scheduler.loop import LoopConfig, SchedulingLoop, Snapshot
from scheduler.store import Store, open_store
from tests.test_loop_support import Clock, until

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    p = metrics.start_http_server("127.0.0.1:0")
    yield p
    metrics.stop_http_servers()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path}/v.db")
    yield s
    s.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def loop(store: Store, tiny: Scenario, clock: Clock) -> Iterator[SchedulingLoop]:
    lp = SchedulingLoop(
        store,
        tiny,
        observers=[metrics.MetricsObserver()],
        config=LoopConfig(batch_window_s=0.01),
        clock=clock,
    )
    lp.start()
    metrics.register_snapshot_source(lp.snapshot)
    yield lp
    metrics.unregister_snapshot_source(lp.snapshot)
    lp.stop()


def submit(store: Store, loop: SchedulingLoop, *specs: WorkloadSpec) -> list[Workload]:
    sub = store.submit("", "", specs, datetime.now(UTC))
    loop.submitted(sub.workloads)
    return list(sub.workloads)


def spec(cores: int, kind: WorkloadKind = WorkloadKind.BATCH, **kw: object) -> WorkloadSpec:
    return WorkloadSpec(
        tenant="tenant-secret",
        resources=Resources(cores * 1000, 1024),
        kind=kind,
        **kw,  # type: ignore[arg-type]
    )


def test_observer_counts_submissions_placements_and_cycles(
    store: Store, loop: SchedulingLoop, port: int
) -> None:
    before = parse(scrape_text(port))
    ws = submit(
        store,
        loop,
        # SLO 2 ms from "city": only near qualifies (RTT 1 ms; green is 4 ms away)
        spec(2, WorkloadKind.SERVICE, origin="city", max_latency_ms=2.0),
        spec(1, replicas=3, allowed_sites=("green",)),
    )
    until(lambda: all(store.get(w.id).state == S.PLACED for w in ws))
    after = parse(scrape_text(port))

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("valley_workloads_submitted_total", kind="service") == 1
    assert delta("valley_workloads_submitted_total", kind="batch") == 1
    assert delta("valley_workloads_placed_total", kind="service") == 1
    assert delta("valley_workloads_placed_total", kind="batch") == 1
    assert delta("valley_replicas_placed_total", site="near") == 1
    assert delta("valley_replicas_placed_total", site="green") == 3
    assert delta("valley_submit_to_placed_seconds_count", kind="service") == 1
    assert delta("valley_placed_replica_rtt_seconds_count", site="near") == 1
    assert delta("valley_placed_replica_rtt_seconds_sum", site="near") == pytest.approx(0.001)
    assert delta("valley_placed_replica_rtt_seconds_count", site="green") == 0  # no origin
    assert delta("valley_cycle_duration_seconds_count") >= 1
    assert delta("valley_solve_duration_seconds_count") == delta(
        "valley_cycle_duration_seconds_count"
    )
    assert delta("valley_cycle_batch_replicas_sum") == 4
    cycles = sum(delta("valley_cycles_total", status=s) for s in metrics.SOLVE_STATUSES)
    assert cycles == delta("valley_cycle_duration_seconds_count")
    assert value(after, "valley_last_cycle_timestamp_seconds") == pytest.approx(
        datetime(2025, 7, 1, 4, 0, tzinfo=UTC).timestamp()
    )


def test_snapshot_gauges_match_the_cluster_by_hand(
    store: Store, loop: SchedulingLoop, port: int
) -> None:
    # one 2-core replica on a 4-core node of "near" (idle 100 W, max 300 W, PUE 1.5, 1.0 CNY
    # and 0.6 kg per kWh): IT 100 + 200 x 2/4 = 200 W, facility 300 W, 0.3 CNY/h, 0.18 kg/h
    (w,) = submit(store, loop, spec(2, allowed_sites=("near",)))
    until(lambda: store.get(w.id).state == S.PLACED)
    got = parse(scrape_text(port))
    assert value(got, "valley_workloads", state="placed") == 1
    assert value(got, "valley_workloads", state="pending") == 0
    assert value(got, "valley_site_capacity", site="near", resource="cpu", unit="core") == 8
    assert value(got, "valley_site_capacity", site="green", resource="cpu", unit="core") == 20
    assert value(got, "valley_site_capacity", site="green", resource="gpu", unit="gpu") == 2
    assert value(got, "valley_site_capacity", site="near", resource="memory", unit="byte") == (
        2 * 8192 * 2**20
    )
    assert value(got, "valley_site_allocated", site="near", resource="cpu", unit="core") == 2
    assert value(got, "valley_site_allocated", site="near", resource="memory", unit="byte") == (
        1024 * 2**20
    )
    assert value(got, "valley_site_utilisation_ratio", site="near", resource="cpu") == 0.25
    assert value(got, "valley_site_utilisation_ratio", site="green", resource="cpu") == 0
    assert value(got, "valley_site_nodes", site="near") == 2
    assert value(got, "valley_site_nodes_powered_on", site="near") == 1
    assert value(got, "valley_site_nodes_powered_on", site="green") == 0
    assert value(got, "valley_site_power_watts", site="near") == pytest.approx(300.0)
    assert value(got, "valley_site_power_watts", site="green") == 0
    assert value(got, "valley_site_energy_cost_cny_per_hour", site="near") == pytest.approx(0.3)
    assert value(got, "valley_site_carbon_kg_per_hour", site="near") == pytest.approx(0.18)
    assert value(got, "valley_site_price_cny_per_kwh", site="green") == 0.5
    assert value(got, "valley_site_carbon_intensity_kg_per_kwh", site="green") == 0.3
    assert value(got, "valley_site_pue", site="near") == 1.5
    assert value(got, "valley_scenario_info", scenario="tiny") == 1
    assert value(got, "valley_scenario_local_hour") == 12  # 04:00 UTC in Asia/Shanghai


def test_gpu_shares_are_summed_as_fractions_of_a_gpu(
    store: Store, loop: SchedulingLoop, port: int
) -> None:
    share = WorkloadSpec(tenant="t", resources=Resources(1000, 1024, 0, 250), replicas=2)
    (w,) = submit(store, loop, share)
    until(lambda: store.get(w.id).state == S.PLACED)
    got = parse(scrape_text(port))
    assert value(got, "valley_site_allocated", site="green", resource="gpu", unit="gpu") == 0.5
    assert value(got, "valley_site_utilisation_ratio", site="green", resource="gpu") == 0.25


def test_unschedulable_pending_cancelled_and_completed_are_counted(
    store: Store, loop: SchedulingLoop, clock: Clock, port: int
) -> None:
    before = parse(scrape_text(port))
    (huge,) = submit(store, loop, spec(64))  # larger than every node: can never fit
    full = submit(store, loop, *[spec(4, allowed_sites=("near",)) for _ in range(2)])
    until(lambda: store.get(huge.id).state == S.UNSCHEDULABLE)
    until(lambda: all(store.get(w.id).state == S.PLACED for w in full))
    (late,) = submit(store, loop, spec(4, allowed_sites=("near",), duration_s=60))
    until(lambda: store.get(late.id).reason != "")
    mid = parse(scrape_text(port))
    assert value(mid, "valley_pending_workloads", reason="capacity") == 1
    assert value(mid, "valley_pending_workloads", reason="slo") == 0  # known codes exported at 0
    assert value(mid, "valley_unschedulable_workloads", reason="size") == 1
    assert (
        value(mid, "valley_workloads_unschedulable_total", reason="size")
        - value(before, "valley_workloads_unschedulable_total", reason="size")
        == 1
    )
    change = store.cancel(full[0].id, datetime.now(UTC))
    loop.state_changed(change.workload, change.previous_state)
    until(lambda: store.get(late.id).state == S.PLACED)
    clock.now += timedelta(seconds=61)
    loop.wake()
    until(lambda: store.get(late.id).state == S.COMPLETED)
    after = parse(scrape_text(port))
    assert (
        value(after, "valley_workloads_cancelled_total")
        - value(before, "valley_workloads_cancelled_total")
        == 1
    )
    assert (
        value(after, "valley_workloads_completed_total")
        - value(before, "valley_workloads_completed_total")
        == 1
    )
    assert value(after, "valley_workloads", state="completed") == 1
    assert value(after, "valley_pending_workloads", reason="capacity") == 0


def test_no_label_carries_a_workload_id_or_tenant(
    store: Store, loop: SchedulingLoop, port: int
) -> None:
    ws = submit(store, loop, spec(1), spec(64))
    until(lambda: all(store.get(w.id).state != S.PENDING for w in ws))
    text = scrape_text(port)
    values = {v for (_, labels) in parse(text) for _, v in labels}
    assert not {w.id for w in ws} & values
    assert "tenant-secret" not in text


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_finds_no_naming_problems_in_a_scrape(
    store: Store, loop: SchedulingLoop, port: int
) -> None:
    (w,) = submit(store, loop, spec(1))
    until(lambda: store.get(w.id).state == S.PLACED)
    text = scrape_text(port)
    assert "valley_site_power_watts" in text and "grpc_server_handled_total" in text
    run = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip() == "" and run.stderr.strip() == ""


def test_a_new_snapshot_source_replaces_the_previous_one(
    store: Store, loop: SchedulingLoop, tiny: Scenario, port: int
) -> None:
    first = loop.snapshot()
    other = type(first)(
        counts_by_state={S.PENDING: 7},
        pending_by_reason={"capacity": 7, "made up code!": 2},
        unschedulable_by_reason={},
        cluster=first.cluster,
        scenario=tiny,
        hour=3,
        month=1,
        last_result=None,
    )
    metrics.register_snapshot_source(lambda: other)
    got = parse(scrape_text(port))
    assert value(got, "valley_workloads", state="pending") == 7
    assert value(got, "valley_pending_workloads", reason="other") == 2  # bounded label values
    assert value(got, "valley_scenario_local_hour") == 3
    metrics.register_snapshot_source(loop.snapshot)
    assert value(parse(scrape_text(port)), "valley_workloads", state="pending") == 0


def test_a_failing_snapshot_source_is_counted_and_the_rest_still_served(port: int) -> None:
    def broken() -> Snapshot:
        raise RuntimeError("store down")

    before = value(parse(scrape_text(port)), "valley_snapshot_errors_total")
    metrics.register_snapshot_source(broken)
    try:
        got = parse(scrape_text(port))
    finally:
        metrics.unregister_snapshot_source(broken)
    assert value(got, "valley_snapshot_errors_total") == before + 1
    assert value(got, "valley_build_info", version=__version__) == 1
    assert not any(name == "valley_workloads" for name, _ in got)


def test_several_metrics_servers_serve_the_same_registry_and_stop_one_by_one(port: int) -> None:
    second = metrics.start_http_server("127.0.0.1:0")
    assert second != port
    assert "valley_build_info" in scrape_text(second)
    metrics.stop_http_server(second)
    with pytest.raises(OSError):
        scrape_text(second)
    assert "valley_build_info" in scrape_text(port)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("[::1]:9464", ("::1", 9464)),
        (":9464", ("0.0.0.0", 9464)),
    ],
)
def test_metrics_address_is_parsed(address: str, expected: tuple[str, int]) -> None:
    assert metrics.parse_address(address) == expected


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000", ""])
def test_a_bad_metrics_address_is_refused(address: str) -> None:
    with pytest.raises(ValueError, match="metrics"):
        metrics.parse_address(address)


def test_a_repeated_cancel_is_counted_once() -> None:
    observer = metrics.MetricsObserver()
    cancelled = Workload("w-1", spec(1), state=S.CANCELLED)

    def count() -> float:
        return metrics.REGISTRY.get_sample_value("valley_workloads_cancelled_total") or 0.0

    before = count()
    observer.on_state_change(cancelled, S.PLACED)
    observer.on_state_change(cancelled, S.CANCELLED)  # cancelling it again returns it unchanged
    assert count() == before + 1
