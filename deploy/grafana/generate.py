"""Generates Valley's Grafana dashboards (the JSON Grafana provisions) from one description.

    python deploy/grafana/generate.py          # rewrite deploy/grafana/dashboards/*.json
    python deploy/grafana/generate.py --check  # exit 1 if a committed dashboard differs

Every panel query uses only metrics that ``scheduler/metrics.py`` exports or recording rules of
``deploy/prometheus/rules/``; tests check both statically and against a live server scraped by a
real Prometheus. Both dashboards are templated by data source (``$datasource``) and site
(``$site``, multi-value with "All"). Plain json, no dependency.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
SITE = 'site=~"$site"'
SCHEMA_VERSION = 39


# ----------------------------------------------------------------------------- building blocks


@dataclass
class Query:
    expr: str
    legend: str = ""
    instant: bool = False


@dataclass
class Panel:
    kind: str  # timeseries | stat | bargauge
    title: str
    queries: list[Query]
    unit: str = "short"
    description: str = ""
    width: int = 12
    height: int = 8
    min: float | None = None
    max: float | None = None
    decimals: int | None = None
    thresholds: list[tuple[str, float | None]] = field(default_factory=list)
    stack: bool = False


@dataclass
class Row:
    title: str
    panels: list[Panel]


def q(expr: str, legend: str = "", instant: bool = False) -> Query:
    return Query(" ".join(expr.split()), legend, instant)


def _field_config(p: Panel) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": p.unit}
    if p.min is not None:
        defaults["min"] = p.min
    if p.max is not None:
        defaults["max"] = p.max
    if p.decimals is not None:
        defaults["decimals"] = p.decimals
    steps = p.thresholds or [("green", None)]
    defaults["thresholds"] = {
        "mode": "absolute",
        "steps": [{"color": color, "value": value} for color, value in steps],
    }
    if p.kind == "timeseries":
        defaults["color"] = {"mode": "palette-classic"}
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 20 if p.stack else 10,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if p.stack else "none", "group": "A"},
        }
    else:
        defaults["color"] = {"mode": "thresholds"}
    return {"defaults": defaults, "overrides": []}


def _options(p: Panel) -> dict[str, Any]:
    if p.kind == "timeseries":
        return {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    reduce = {"calcs": ["lastNotNull"], "fields": "", "values": False}
    if p.kind == "stat":
        return {
            "reduceOptions": reduce,
            "colorMode": "value",
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": "auto",
        }
    return {
        "reduceOptions": reduce,
        "displayMode": "gradient",
        "orientation": "horizontal",
        "showUnfilled": True,
    }


def _panel_json(p: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    targets = []
    for i, query in enumerate(p.queries):
        target: dict[str, Any] = {
            "datasource": DS,
            "expr": query.expr,
            "legendFormat": query.legend or "__auto",
            "refId": chr(ord("A") + i),
        }
        if query.instant or p.kind == "bargauge":
            target["instant"] = True
            target["range"] = False
        else:
            target["range"] = True
        targets.append(target)
    return {
        "id": pid,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": DS,
        "gridPos": {"h": p.height, "w": p.width, "x": x, "y": y},
        "fieldConfig": _field_config(p),
        "options": _options(p),
        "targets": targets,
    }


def _layout(rows: Iterable[Row]) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    pid = 1
    y = 0
    for row in rows:
        panels.append(
            {
                "id": pid,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        pid += 1
        y += 1
        x = 0
        line_height = 0
        for p in row.panels:
            if x + p.width > 24:
                x = 0
                y += line_height
                line_height = 0
            panels.append(_panel_json(p, pid, x, y))
            pid += 1
            x += p.width
            line_height = max(line_height, p.height)
        y += line_height
    return panels


def _templating() -> dict[str, Any]:
    site_query = "label_values(valley_site_capacity, site)"
    return {
        "list": [
            {
                "name": "datasource",
                "label": "Data source",
                "type": "datasource",
                "query": "prometheus",
                "current": {},
                "hide": 0,
                "refresh": 1,
                "regex": "",
                "options": [],
            },
            {
                "name": "site",
                "label": "Site",
                "type": "query",
                "datasource": DS,
                "definition": site_query,
                # the plain-string form every Grafana version reads (newer ones migrate it)
                "query": site_query,
                "current": {},
                "hide": 0,
                "includeAll": True,
                "multi": True,
                "refresh": 2,
                "regex": "",
                "sort": 1,
                "options": [],
            },
        ]
    }


def dashboard(uid: str, title: str, description: str, rows: list[Row]) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["valley"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "timepicker": {},
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "id": None,
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "title": "Valley dashboards",
                "type": "dashboards",
                "tags": ["valley"],
                "asDropdown": False,
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "templating": _templating(),
        "panels": _layout(rows),
    }


# ----------------------------------------------------------------------------- dashboards

PERCENT_GOOD = [("red", None), ("orange", 0.9), ("green", 0.99)]
PERCENT_BAD = [("green", None), ("orange", 0.01), ("red", 0.05)]
UTILISATION = [("green", None), ("orange", 0.8), ("red", 0.9)]


def overview() -> dict[str, Any]:
    stats = Row(
        "At a glance",
        [
            Panel(
                "stat",
                "Placed / s",
                [q(f"sum(rate(valley_workloads_placed_total[{RATE}]))")],
                unit="short",
                decimals=1,
                width=4,
                height=4,
                description="Workloads that became PLACED per second.",
            ),
            Panel(
                "stat",
                "Pending",
                [q('sum(valley_workloads{state="pending"})')],
                width=4,
                height=4,
                thresholds=[("green", None), ("orange", 100), ("red", 1000)],
                description="Workloads waiting for placement (queued or waiting for capacity).",
            ),
            Panel(
                "stat",
                "Placed now",
                [q('sum(valley_workloads{state="placed"})')],
                width=4,
                height=4,
                description="Workloads currently holding capacity.",
            ),
            Panel(
                "stat",
                "Server error ratio (5m)",
                [q("max(valley:grpc_server_errors:ratio_rate5m)")],
                unit="percentunit",
                width=4,
                height=4,
                thresholds=PERCENT_BAD,
                description="Share of RPCs that ended Unknown, Internal, Unavailable, DataLoss or "
                "DeadlineExceeded. Alert ValleyHighErrorRatio fires above 5%.",
            ),
            Panel(
                "stat",
                "Scheduling SLO (5m)",
                [q("min(valley:submit_to_placed_within_1s:ratio_rate5m)")],
                unit="percentunit",
                width=4,
                height=4,
                thresholds=PERCENT_GOOD,
                description="Share of workloads placed within 1 s of their submission.",
            ),
            Panel(
                "stat",
                "Facility power",
                [q(f"sum(valley_site_power_watts{{{SITE}}})")],
                unit="watt",
                width=4,
                height=4,
                description="IT power of powered nodes x PUE, selected sites.",
            ),
        ],
    )
    throughput = Row(
        "Throughput and latency",
        [
            Panel(
                "timeseries",
                "Workloads / s",
                [
                    q(
                        f"sum by (kind) (rate(valley_workloads_submitted_total[{RATE}]))",
                        "submitted {{kind}}",
                    ),
                    q(
                        f"sum by (kind) (rate(valley_workloads_placed_total[{RATE}]))",
                        "placed {{kind}}",
                    ),
                    q(f"sum(rate(valley_workloads_completed_total[{RATE}]))", "completed"),
                    q(f"sum(rate(valley_workloads_cancelled_total[{RATE}]))", "cancelled"),
                ],
                unit="short",
                min=0,
                description="Submitted and placed by kind; completed (duration_s elapsed) and "
                "cancelled by tenants.",
            ),
            Panel(
                "timeseries",
                "Submit-to-placed latency",
                [
                    q(
                        "histogram_quantile(0.5, sum by (le) "
                        f"(rate(valley_submit_to_placed_seconds_bucket[{RATE}])))",
                        "p50",
                    ),
                    q(
                        "histogram_quantile(0.9, sum by (le) "
                        f"(rate(valley_submit_to_placed_seconds_bucket[{RATE}])))",
                        "p90",
                    ),
                    q(
                        "histogram_quantile(0.99, sum by (le) "
                        f"(rate(valley_submit_to_placed_seconds_bucket[{RATE}])))",
                        "p99",
                    ),
                ],
                unit="s",
                min=0,
                description="From creation to placement. Workloads that wait for capacity "
                "count when they are finally placed.",
            ),
            Panel(
                "timeseries",
                "Replicas placed by site / s",
                [
                    q(
                        f"sum by (site) (rate(valley_replicas_placed_total{{{SITE}}}[{RATE}]))",
                        "{{site}}",
                    )
                ],
                unit="short",
                min=0,
                stack=True,
            ),
            Panel(
                "timeseries",
                "Placed replica RTT from origin",
                [
                    q(
                        "histogram_quantile(0.5, sum by (le, site) "
                        f"(rate(valley_placed_replica_rtt_seconds_bucket{{{SITE}}}[{RATE}])))",
                        "p50 {{site}}",
                    ),
                    q(
                        "histogram_quantile(0.99, sum by (le, site) "
                        f"(rate(valley_placed_replica_rtt_seconds_bucket{{{SITE}}}[{RATE}])))",
                        "p99 {{site}}",
                    ),
                ],
                unit="s",
                min=0,
                description="Network round trip from a workload's origin to the site of its "
                "replicas (workloads with an origin). SLOs are hard constraints: this shows how "
                "much latency headroom placements leave.",
            ),
        ],
    )
    queue = Row(
        "Queue",
        [
            Panel(
                "timeseries",
                "Workloads by state",
                [q("sum by (state) (valley_workloads)", "{{state}}")],
                min=0,
            ),
            Panel(
                "timeseries",
                "Pending by reason",
                [q("sum by (reason) (valley_pending_workloads)", "{{reason}}")],
                min=0,
                stack=True,
                description="PENDING workloads that were tried and do not fit now. capacity: a "
                "site is full; priority: higher-priority work took the room; slo: the sites "
                "that meet the SLO are full.",
            ),
            Panel(
                "timeseries",
                "New unschedulable workloads by reason",
                [
                    q(
                        f"sum by (reason) (increase(valley_workloads_unschedulable_total[{RATE}]))",
                        "{{reason}}",
                    )
                ],
                min=0,
                stack=True,
                description="Accepted workloads that can never fit as specified (final).",
            ),
            Panel(
                "timeseries",
                "Unschedulable workloads in the store",
                [q("sum by (reason) (valley_unschedulable_workloads)", "{{reason}}")],
                min=0,
                stack=True,
            ),
        ],
    )
    api = Row(
        "API and errors",
        [
            Panel(
                "timeseries",
                "RPCs by code / s",
                [
                    q(
                        f"sum by (grpc_code) (rate(grpc_server_handled_total[{RATE}]))",
                        "{{grpc_code}}",
                    )
                ],
                min=0,
                stack=True,
                description="Go spelling of gRPC codes. InvalidArgument, NotFound and "
                "FailedPrecondition are client mistakes (a cancel of a completed workload).",
            ),
            Panel(
                "timeseries",
                "RPCs by method / s",
                [
                    q(
                        f"sum by (grpc_method) (rate(grpc_server_handled_total[{RATE}]))",
                        "{{grpc_method}}",
                    )
                ],
                min=0,
            ),
            Panel(
                "timeseries",
                "RPC latency p99 by method (unary)",
                [
                    q(
                        "histogram_quantile(0.99, sum by (le, grpc_method) "
                        f'(rate(grpc_server_handling_seconds_bucket{{grpc_type="unary"}}[{RATE}])))',
                        "{{grpc_method}}",
                    )
                ],
                unit="s",
                min=0,
            ),
            Panel(
                "timeseries",
                "Error ratio and scheduling SLO attainment",
                [
                    q("max(valley:grpc_server_errors:ratio_rate5m)", "server error ratio"),
                    q(
                        "min(valley:submit_to_placed_within_1s:ratio_rate5m)",
                        "placed within 1 s",
                    ),
                ],
                unit="percentunit",
                min=0,
                max=1,
                description="Both over 5 minutes (recording rules of deploy/prometheus).",
            ),
        ],
    )
    sites = Row(
        "Sites",
        [
            Panel(
                "timeseries",
                "Utilisation by site and resource",
                [q(f"valley_site_utilisation_ratio{{{SITE}}}", "{{site}} {{resource}}")],
                unit="percentunit",
                min=0,
                max=1,
                thresholds=UTILISATION,
                description="Allocated over capacity. Alert ValleySiteNearCapacity fires above "
                "90% for 10 minutes.",
            ),
            Panel(
                "bargauge",
                "Utilisation now",
                [q(f"valley_site_utilisation_ratio{{{SITE}}}", "{{site}} {{resource}}")],
                unit="percentunit",
                min=0,
                max=1,
                width=6,
                thresholds=UTILISATION,
            ),
            Panel(
                "timeseries",
                "Nodes powered on",
                [
                    q(f"valley_site_nodes_powered_on{{{SITE}}}", "{{site}} on"),
                    q(f"valley_site_nodes{{{SITE}}}", "{{site}} total"),
                ],
                min=0,
                width=6,
                description="Nodes holding any replica; empty nodes are powered down.",
            ),
            Panel(
                "timeseries",
                "CPU cores allocated",
                [
                    q(f'valley_site_allocated{{{SITE},resource="cpu"}}', "{{site}} allocated"),
                    q(f'valley_site_capacity{{{SITE},resource="cpu"}}', "{{site}} capacity"),
                ],
                min=0,
            ),
            Panel(
                "timeseries",
                "GPUs allocated",
                [
                    q(f'valley_site_allocated{{{SITE},resource="gpu"}}', "{{site}} allocated"),
                    q(f'valley_site_capacity{{{SITE},resource="gpu"}}', "{{site}} capacity"),
                ],
                min=0,
                description="Fractional GPU shares summed (two half GPUs count one).",
            ),
        ],
    )
    energy = Row(
        "Energy and carbon",
        [
            Panel(
                "timeseries",
                "Facility power",
                [q(f"valley_site_power_watts{{{SITE}}}", "{{site}}")],
                unit="watt",
                min=0,
                stack=True,
                width=8,
            ),
            Panel(
                "timeseries",
                "Energy cost rate (CNY/h)",
                [q(f"valley_site_energy_cost_cny_per_hour{{{SITE}}}", "{{site}}")],
                unit="short",
                min=0,
                stack=True,
                width=8,
            ),
            Panel(
                "timeseries",
                "Carbon rate (kg CO2/h)",
                [q(f"valley_site_carbon_kg_per_hour{{{SITE}}}", "{{site}}")],
                unit="short",
                min=0,
                stack=True,
                width=8,
            ),
            Panel(
                "timeseries",
                "Electricity price (CNY/kWh)",
                [q(f"valley_site_price_cny_per_kwh{{{SITE}}}", "{{site}}")],
                unit="short",
                min=0,
                description="The hour's tariff at each site (time-of-use periods).",
            ),
            Panel(
                "timeseries",
                "Grid carbon intensity (kg CO2/kWh)",
                [q(f"valley_site_carbon_intensity_kg_per_kwh{{{SITE}}}", "{{site}}")],
                unit="short",
                min=0,
            ),
            Panel(
                "bargauge",
                "Planned load, next 24 h",
                [
                    q(
                        f"sum by (hours_ahead) (valley_reserved_cores{{{SITE}}})",
                        "+{{hours_ahead}} h",
                        instant=True,
                    )
                ],
                unit="short",
                min=0,
                width=24,
                description="Cores reserved by deferrable work placed to start later, per hour "
                "ahead (+0 h: the current hour): the load Valley has planned for the cheaper "
                "and greener hours of the next day.",
            ),
        ],
    )
    return dashboard(
        "valley-overview",
        "Valley overview",
        "Valley for operators: throughput, queue, latency, errors, solver gap, per-site "
        "utilisation, energy and carbon.",
        [stats, throughput, queue, api, _solver_summary_row(), sites, energy],
    )


def _solver_summary_row() -> Row:
    return Row(
        "Solver",
        [
            Panel(
                "timeseries",
                "Optimality gap of the last cycle",
                [q("max(valley_last_cycle_gap_ratio)", "gap")],
                unit="percentunit",
                min=0,
                description="(objective - LP bound) / objective. Alert ValleySolverGapHigh "
                "fires above 5% for 15 minutes. Details on the Valley solver dashboard.",
            ),
            Panel(
                "timeseries",
                "Scheduling cycle duration",
                [
                    q("max(valley:cycle_duration_seconds:p99_rate5m)", "cycle p99"),
                    q("max(valley:solve_duration_seconds:p99_rate5m)", "solve p99"),
                ],
                unit="s",
                min=0,
            ),
        ],
    )


def solver() -> dict[str, Any]:
    stats = Row(
        "At a glance",
        [
            Panel(
                "stat",
                "Cycles / s",
                [q(f"sum(rate(valley_cycles_total[{RATE}]))")],
                decimals=2,
                width=4,
                height=4,
            ),
            Panel(
                "stat",
                "Last gap",
                [q("max(valley_last_cycle_gap_ratio)")],
                unit="percentunit",
                width=4,
                height=4,
                thresholds=[("green", None), ("orange", 0.01), ("red", 0.05)],
            ),
            Panel(
                "stat",
                "Cycle p99 (5m)",
                [q("max(valley:cycle_duration_seconds:p99_rate5m)")],
                unit="s",
                width=4,
                height=4,
                thresholds=[("green", None), ("orange", 1), ("red", 2)],
            ),
            Panel(
                "stat",
                "Fallbacks (1 h)",
                [q("sum(increase(valley_solver_fallbacks_total[1h]))")],
                decimals=0,
                width=4,
                height=4,
                thresholds=[("green", None), ("orange", 1), ("red", 4)],
            ),
            Panel(
                "stat",
                "Since last cycle",
                [q("time() - max(valley_last_cycle_timestamp_seconds)")],
                unit="s",
                width=4,
                height=4,
                description="Cycles run when work arrives or capacity frees up; an idle "
                "scheduler has nothing to do.",
            ),
            Panel(
                "stat",
                "Objective (CNY/h)",
                [q("max(valley_last_cycle_objective_cny_per_hour)")],
                decimals=2,
                width=4,
                height=4,
            ),
        ],
    )
    timing = Row(
        "Cycle timing",
        [
            Panel(
                "timeseries",
                "Cycle and solve duration",
                [
                    q(
                        "histogram_quantile(0.5, sum by (le) "
                        f"(rate(valley_cycle_duration_seconds_bucket[{RATE}])))",
                        "cycle p50",
                    ),
                    q(
                        "histogram_quantile(0.99, sum by (le) "
                        f"(rate(valley_cycle_duration_seconds_bucket[{RATE}])))",
                        "cycle p99",
                    ),
                    q(
                        "histogram_quantile(0.5, sum by (le) "
                        f"(rate(valley_solve_duration_seconds_bucket[{RATE}])))",
                        "solve p50",
                    ),
                    q(
                        "histogram_quantile(0.99, sum by (le) "
                        f"(rate(valley_solve_duration_seconds_bucket[{RATE}])))",
                        "solve p99",
                    ),
                ],
                unit="s",
                min=0,
            ),
            Panel(
                "timeseries",
                "Solver share of cycle time",
                [
                    q(
                        f"sum(rate(valley_solve_duration_seconds_sum[{RATE}])) / "
                        f"sum(rate(valley_cycle_duration_seconds_sum[{RATE}]))",
                        "solve / cycle",
                    )
                ],
                unit="percentunit",
                min=0,
                max=1,
                description="The rest is building the problem and committing to the store.",
            ),
        ],
    )
    batches = Row(
        "Batches",
        [
            Panel(
                "timeseries",
                "Batch size (workloads)",
                [
                    q(
                        f"sum(rate(valley_cycle_batch_workloads_sum[{RATE}])) / "
                        f"sum(rate(valley_cycle_batch_workloads_count[{RATE}]))",
                        "mean",
                    ),
                    q(
                        "histogram_quantile(0.99, sum by (le) "
                        f"(rate(valley_cycle_batch_workloads_bucket[{RATE}])))",
                        "p99",
                    ),
                ],
                min=0,
            ),
            Panel(
                "timeseries",
                "Batch size (replicas)",
                [
                    q(
                        f"sum(rate(valley_cycle_batch_replicas_sum[{RATE}])) / "
                        f"sum(rate(valley_cycle_batch_replicas_count[{RATE}]))",
                        "mean",
                    ),
                    q(
                        "histogram_quantile(0.99, sum by (le) "
                        f"(rate(valley_cycle_batch_replicas_bucket[{RATE}])))",
                        "p99",
                    ),
                ],
                min=0,
            ),
        ],
    )
    quality = Row(
        "Solution quality",
        [
            Panel(
                "timeseries",
                "Cycles by solver status / s",
                [q(f"sum by (status) (rate(valley_cycles_total[{RATE}]))", "{{status}}")],
                min=0,
                stack=True,
                description="optimal: proven optimal; feasible: time limit hit, best kept; "
                "fallback: greedy answer; heuristic: a peer policy; empty: nothing to place.",
            ),
            Panel(
                "timeseries",
                "Optimality gap",
                [
                    q("max(valley_last_cycle_gap_ratio)", "last cycle"),
                    q(
                        "histogram_quantile(0.9, sum by (le) "
                        f"(rate(valley_cycle_gap_ratio_bucket[{RATE}])))",
                        "p90 of cycles",
                    ),
                ],
                unit="percentunit",
                min=0,
                description="(objective - LP bound) / objective, for cycles that proved a bound.",
            ),
            Panel(
                "timeseries",
                "Objective and bound (CNY/h)",
                [
                    q("max(valley_last_cycle_objective_cny_per_hour)", "objective"),
                    q("max(valley_last_cycle_bound_cny_per_hour)", "bound"),
                ],
                description="Objective: energy + carbon + latency + headroom + penalty for "
                "unplaced work, CNY per hour, of the last cycle's batch.",
            ),
            Panel(
                "timeseries",
                "Fallbacks to the greedy answer",
                [q(f"sum(increase(valley_solver_fallbacks_total[{RATE}]))", "fallbacks")],
                min=0,
                description="Cycles in which CP-SAT found nothing in time. Alert "
                "ValleySolverFallbacks fires above 3 in 15 minutes.",
            ),
            Panel(
                "timeseries",
                "Solver runs by backend and status / s",
                [
                    q(
                        "sum by (backend, status) "
                        f"(rate(valley_solver_backend_runs_total[{RATE}]))",
                        "{{backend}} {{status}}",
                    )
                ],
                min=0,
                description="What the solvers inside each solve said: the LP bound (lp), the MIP "
                "bound (mip) and CP-SAT (cpsat). NOT_SOLVED and UNKNOWN mean out of time; "
                "MODEL_INVALID, INFEASIBLE or ABNORMAL mean a bug and are logged.",
            ),
        ],
    )
    outcome = Row(
        "Outcome",
        [
            Panel(
                "timeseries",
                "Replicas placed by site / s",
                [
                    q(
                        f"sum by (site) (rate(valley_replicas_placed_total{{{SITE}}}[{RATE}]))",
                        "{{site}}",
                    )
                ],
                min=0,
                stack=True,
            ),
            Panel(
                "timeseries",
                "Pending by reason",
                [q("sum by (reason) (valley_pending_workloads)", "{{reason}}")],
                min=0,
                stack=True,
            ),
            Panel(
                "timeseries",
                "Server CPU",
                [q(f'sum(rate(process_cpu_seconds_total{{job="valley"}}[{RATE}]))', "cores")],
                unit="short",
                min=0,
                description="CPU seconds per second of the Valley process (CP-SAT runs in it).",
            ),
            Panel(
                "timeseries",
                "Server memory",
                [q('sum(process_resident_memory_bytes{job="valley"})', "resident")],
                unit="bytes",
                min=0,
            ),
        ],
    )
    return dashboard(
        "valley-solver",
        "Valley solver",
        "The scheduling loop and its solver: cycle and solve durations, batch sizes, statuses, "
        "optimality gap over time, fallbacks.",
        [stats, timing, batches, quality, outcome],
    )


DASHBOARDS = {"valley-overview.json": overview, "valley-solver.json": solver}


def render() -> dict[str, str]:
    return {
        name: json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
        for name, build in DASHBOARDS.items()
    }


def main(argv: list[str]) -> int:
    rendered = render()
    if "--check" in argv:
        stale = [
            n
            for n, text in rendered.items()
            if not (OUT / n).is_file() or (OUT / n).read_text(encoding="utf-8") != text
        ]
        if stale:
            print(f"stale dashboards: {', '.join(stale)}; run python deploy/grafana/generate.py")
            return 1
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.items():
        (OUT / name).write_text(text, encoding="utf-8")
        print(f"wrote {OUT / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
