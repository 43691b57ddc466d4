"""The operators' view end to end: a real ``valley serve`` (subprocess, SQLite in a temp dir,
beijing-hebei) under demo load, scraped every second by a real Prometheus that loads the rules
of deploy/prometheus; every query of every dashboard panel must be valid and return data."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from scheduler.demo import DemoLoad, DemoStats

if TYPE_CHECKING:
    from tests.prom import PrometheusServer, ValleyProcess

pytest_plugins = ["tests.prom"]
pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
RATE_INTERVAL = "30s"  # what Grafana would pick for $__rate_interval at this scrape interval
DEMO_LIMIT_S = 90.0  # the demo stops with the module at the latest


@pytest.fixture(scope="module")
def valley(valley_server: ValleyProcess) -> ValleyProcess:
    return valley_server


@pytest.fixture(scope="module")
def demo(valley: ValleyProcess) -> Iterator[DemoStats]:
    """Demo load in a thread for the whole module: cancellations after ~1 s, a few misconfigured
    workloads so that unschedulable panels have something to show."""
    stop = threading.Event()
    channel = grpc.insecure_channel(valley.grpc_address)
    load = DemoLoad(
        channel, rate=20, interval=0.25, cancel_fraction=0.1, cancel_after_s=1.0, misconfigured=0.05
    )
    thread = threading.Thread(target=load.run, args=(DEMO_LIMIT_S, stop), daemon=True)
    thread.start()
    yield load.stats
    stop.set()
    thread.join(30)
    channel.close()


@pytest.fixture(scope="module")
def prometheus(
    valley: ValleyProcess,
    demo: DemoStats,
    prometheus_server: Callable[[Sequence[str]], PrometheusServer],
) -> PrometheusServer:
    prom = prometheus_server([valley.metrics_address])
    prom.wait_until(lambda: prom.targets_up("valley"), 30, "the valley target to be up")

    def enough_data() -> bool:
        # placements seen, and enough scrapes for rates over the dashboards' windows
        placed = prom.query("sum(valley_workloads_placed_total) > 0")
        scrapes = prom.query('count_over_time(up{job="valley"}[1m]) >= 8')
        cancelled = prom.query("sum(valley_workloads_cancelled_total) > 0")
        return bool(placed and scrapes and cancelled)

    prom.wait_until(enough_data, 60, "placements, cancellations and 8 scrapes")
    return prom


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel, expr) of every target of every panel."""
    out = []
    for path in DASHBOARDS:
        d = json.loads(path.read_text(encoding="utf-8"))
        stack: list[dict[str, Any]] = list(d["panels"])
        while stack:
            p = stack.pop(0)
            stack.extend(p.get("panels", []))
            for t in p.get("targets", []):
                out.append((d["title"], p["title"], t["expr"]))
    return out


def substitute(expr: str, sites: Sequence[str]) -> str:
    """Template variables as Grafana interpolates them: a multi-value "All" site selection
    becomes a regex alternation."""
    expr = expr.replace("$__rate_interval", RATE_INTERVAL)
    expr = expr.replace("$site", "(" + "|".join(re.escape(s) for s in sites) + ")")
    assert "$" not in expr, f"unknown template variable in {expr!r}"
    return expr


def test_the_site_variable_lists_the_scenario_sites(prometheus: PrometheusServer) -> None:
    sites = prometheus.api("label/site/values", **{"match[]": "valley_site_capacity"})
    assert sorted(sites) == ["etown", "zhangbei"]


def test_every_dashboard_query_is_valid_and_returns_data(prometheus: PrometheusServer) -> None:
    sites = prometheus.api("label/site/values", **{"match[]": "valley_site_capacity"})
    queries = panel_queries()
    assert len(queries) > 40
    failures = []
    for dashboard, panel, expr in queries:
        try:
            result = prometheus.query(substitute(expr, sites))
        except AssertionError as e:
            failures.append(f"{dashboard} / {panel}: invalid: {e}")
            continue
        if not result:
            failures.append(f"{dashboard} / {panel}: no series for {expr}")
    assert not failures, "\n".join(failures)


def test_every_rule_loads_and_evaluates_without_error(prometheus: PrometheusServer) -> None:
    groups = prometheus.api("rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    names = {r["name"] for r in rules}
    assert "ValleyDown" in names and "valley:grpc_server_errors:ratio_rate5m" in names
    prometheus.wait_until(
        lambda: all(r.get("lastEvaluation", "").startswith("20") for r in _rules(prometheus)),
        15,
        "every rule evaluated",
    )
    bad = [(r["name"], r.get("lastError")) for r in _rules(prometheus) if r["health"] != "ok"]
    assert not bad


def _rules(prometheus: PrometheusServer) -> list[dict[str, Any]]:
    return [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]


def test_the_unschedulable_alert_fires_for_the_demos_misconfigured_workloads(
    prometheus: PrometheusServer,
) -> None:
    def firing() -> list[dict[str, Any]]:
        return [
            a
            for a in prometheus.api("alerts")["alerts"]
            if a["state"] == "firing" and a["labels"]["alertname"] == "ValleyUnschedulableWorkloads"
        ]

    prometheus.wait_until(lambda: bool(firing()), 30, "ValleyUnschedulableWorkloads to fire")
    (alert,) = firing()
    assert alert["labels"]["reason"] == "slo"  # an SLO of 0.1 ms no site meets
    assert alert["labels"]["severity"] == "info"
    assert alert["annotations"]["summary"] == (
        "Workloads became unschedulable (slo) in the last 10 minutes"
    )


def test_grpc_metrics_count_the_demo_requests_with_go_codes(
    prometheus: PrometheusServer, demo: DemoStats
) -> None:
    ok = prometheus.query(
        'sum(grpc_server_handled_total{grpc_service="valley.v1.PlacementService",'
        'grpc_method="SubmitWorkloads",grpc_code="OK"})'
    )
    assert ok and float(ok[0]["value"][1]) >= 1
    codes = {r["metric"]["grpc_code"] for r in prometheus.query("grpc_server_handled_total")}
    assert "OK" in codes
    assert not codes & {"Unknown", "Internal"}, codes
    assert demo.requests >= 1 and not demo.errors


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_finds_no_naming_problems_in_the_live_scrape(
    valley: ValleyProcess, prometheus: PrometheusServer
) -> None:
    text = valley.scrape()
    assert "valley_site_power_watts" in text and "grpc_server_handled_total{" in text
    run = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert run.returncode == 0 and not run.stdout.strip(), run.stdout + run.stderr
