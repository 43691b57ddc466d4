"""Grafana dashboards of deploy/grafana: the committed JSON is the generator's output, both are
templated by data source and site, the layout is sound, and every query reads only metrics the
server exports or recording rules define. (tests/test_deploy_live.py runs every query against
a live server through a real Prometheus.)"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml


# tests.prom is a pytest plugin of other modules: import it late, after pytest registered it.
def exported_names() -> set[str]:
    from tests.prom import exported_names as names

    return names()


def metric_names_in(expr: str) -> set[str]:
    from tests.prom import metric_names_in as names

    return names(expr)


ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
RULES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "valley_grafana_generate", GRAFANA / "generate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8")))


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in dashboard["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def targets(dashboard: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(p["title"], t) for p in panels(dashboard) for t in p.get("targets", [])]


def recorded() -> set[str]:
    names = set()
    for path in RULES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            names |= {r["record"] for r in group["rules"] if "record" in r}
    return names


def test_the_overview_and_solver_dashboards_are_committed() -> None:
    titles = {load(p)["title"] for p in DASHBOARDS}
    assert titles == {"Valley overview", "Valley solver"}


def test_committed_dashboards_equal_the_generator_output() -> None:
    rendered = load_generator().render()
    assert sorted(rendered) == [p.name for p in DASHBOARDS]
    for path in DASHBOARDS:
        assert path.read_text(encoding="utf-8") == rendered[path.name], (
            f"{path.name} is stale: run python deploy/grafana/generate.py"
        )


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_templated_by_datasource_and_site(path: Path) -> None:
    d = load(path)
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    site = variables["site"]
    assert site["multi"] and site["includeAll"]
    assert site["datasource"]["uid"] == "${datasource}"
    assert metric_names_in(site["definition"]) <= exported_names()
    for title, t in targets(d):
        assert t["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
    uses_site = [title for title, t in targets(d) if "$site" in t["expr"]]
    assert uses_site, "no panel filters by site"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_layout_has_unique_ids_and_no_overlapping_panels(path: Path) -> None:
    d = load(path)
    ids = [p["id"] for p in panels(d)]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for p in panels(d):
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]


def test_dashboard_uids_are_unique_and_stable() -> None:
    uids = [load(p)["uid"] for p in DASHBOARDS]
    assert sorted(uids) == ["valley-overview", "valley-solver"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_query_reads_only_exported_metrics_or_recording_rules(path: Path) -> None:
    known = exported_names() | recorded()
    for title, t in targets(load(path)):
        used = metric_names_in(t["expr"])
        assert used, f"{title}: no metric in {t['expr']!r}"
        assert used <= known, f"{title}: unknown {used - known}"
        # only the variables the dashboard defines, and Grafana's rate interval
        assert set(re.findall(r"\$\{?(\w+)", t["expr"])) <= {"site", "__rate_interval"}, title


# What the issue asks each dashboard to show, as a metric its queries must read (one per line).
OVERVIEW_NEEDS = [
    ("throughput", "valley_workloads_placed_total"),
    ("pending", "valley_workloads"),
    ("latency", "valley_submit_to_placed_seconds_bucket"),
    ("errors", "grpc_server_handled_total"),
    ("solver gap", "valley_last_cycle_gap_ratio"),
    ("per-site utilisation", "valley_site_utilisation_ratio"),
    ("energy rate", "valley_site_energy_cost_cny_per_hour"),
    ("carbon rate", "valley_site_carbon_kg_per_hour"),
    ("SLO attainment", "valley:submit_to_placed_within_1s:ratio_rate5m"),
]
SOLVER_NEEDS = [
    ("cycle duration", "valley_cycle_duration_seconds_bucket"),
    ("solve duration", "valley_solve_duration_seconds_bucket"),
    ("batch size in workloads", "valley_cycle_batch_workloads_sum"),
    ("batch size in replicas", "valley_cycle_batch_replicas_sum"),
    ("statuses", "valley_cycles_total"),
    ("gap over time", "valley_last_cycle_gap_ratio"),
    ("fallbacks", "valley_solver_fallbacks_total"),
]


def _reads(uid: str) -> set[str]:
    d = next(load(p) for p in DASHBOARDS if load(p)["uid"] == uid)
    return set().union(*(metric_names_in(t["expr"]) for _, t in targets(d)))


@pytest.mark.parametrize(("what", "metric"), OVERVIEW_NEEDS, ids=[w for w, _ in OVERVIEW_NEEDS])
def test_overview_shows(what: str, metric: str) -> None:
    assert metric in _reads("valley-overview")


@pytest.mark.parametrize(("what", "metric"), SOLVER_NEEDS, ids=[w for w, _ in SOLVER_NEEDS])
def test_solver_dashboard_shows(what: str, metric: str) -> None:
    assert metric in _reads("valley-solver")


def test_provisioning_points_grafana_at_prometheus_and_the_dashboards() -> None:
    prov = GRAFANA / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "valley.yml").read_text(encoding="utf-8"))
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["url"].startswith("http://")
    boards = yaml.safe_load((prov / "dashboards" / "valley.yml").read_text(encoding="utf-8"))
    (provider,) = boards["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]
