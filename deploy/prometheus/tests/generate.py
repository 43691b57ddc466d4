"""Writes valley-alerts_test.yml, the `promtool test rules` unit tests of every Valley alert.

Each alert has cases that fire and cases that do not, in the table below. promtool compares
annotations exactly, so the expected summary is written here by hand (it checks the template's
rendering of $value and $labels), and the expected description is the rule's own text with its
{{ $labels.X }} placeholders filled from the expected labels (descriptions hold no other template).

    python deploy/prometheus/tests/generate.py          # rewrite the YAML
    python deploy/prometheus/tests/generate.py --check  # exit 1 if the committed YAML differs
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE.parent / "rules"
OUTPUT = HERE / "valley-alerts_test.yml"

JOB = {"job": "valley", "instance": "127.0.0.1:9464"}
GRPC = {"grpc_type": "unary", "grpc_service": "valley.v1.PlacementService"}


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    all_labels = {**JOB, **labels}
    text = ",".join(f'{k}="{v}"' for k, v in all_labels.items())
    return {"series": f"{name}{{{text}}}", "values": values}


def repeat(value: str, n: int) -> str:
    return " ".join([value] * n)


def histogram(name: str, counts_per_minute: dict[str, int], minutes: int) -> list[dict[str, str]]:
    """Cumulative bucket series of a histogram observed at a steady rate: ``counts_per_minute``
    maps each ``le`` bound to the observations per minute at or below it."""
    out = [
        series(f"{name}_bucket", f"0+{n}x{minutes}", le=le) for le, n in counts_per_minute.items()
    ]
    total = counts_per_minute["+Inf"]
    out.append(series(f"{name}_count", f"0+{total}x{minutes}"))
    return out


# alert -> list of (case name, input series, eval time, expected alerts: [(labels, summary)])
Case = tuple[str, list[dict[str, str]], str, list[tuple[dict[str, str], str]]]
CASES: dict[str, list[Case]] = {
    "ValleyDown": [
        (
            "scrapes fail for 5 minutes",
            [series("up", "0x5")],
            "3m",
            [({**JOB}, "Valley on 127.0.0.1:9464 is down")],
        ),
        ("scrapes succeed", [series("up", "1x5")], "3m", []),
        ("one failed scrape is not an outage", [series("up", "1 1 0 1 1 1")], "3m", []),
    ],
    "ValleyTargetMissing": [
        (
            "no valley target at all",
            [series("up", "1x10", job="node")],
            "7m",
            [({"job": "valley"}, "Prometheus has no Valley target to scrape")],
        ),
        ("the target exists (even down)", [series("up", "0x10")], "7m", []),
    ],
    "ValleyHighErrorRatio": [
        (
            "10% of RPCs end Internal",
            [
                series(
                    "grpc_server_handled_total",
                    "0+90x20",
                    **GRPC,
                    grpc_method="SubmitWorkloads",
                    grpc_code="OK",
                ),
                series(
                    "grpc_server_handled_total",
                    "0+10x20",
                    **GRPC,
                    grpc_method="SubmitWorkloads",
                    grpc_code="Internal",
                ),
            ],
            "15m",
            [({"job": "valley"}, "10% of Valley RPCs fail on the server side")],
        ),
        (
            "1% Unavailable is below the threshold",
            [
                series(
                    "grpc_server_handled_total",
                    "0+99x20",
                    **GRPC,
                    grpc_method="GetWorkload",
                    grpc_code="OK",
                ),
                series(
                    "grpc_server_handled_total",
                    "0+1x20",
                    **GRPC,
                    grpc_method="GetWorkload",
                    grpc_code="Unavailable",
                ),
            ],
            "15m",
            [],
        ),
        (
            "client mistakes are not server errors",
            [
                series(
                    "grpc_server_handled_total",
                    "0+50x20",
                    **GRPC,
                    grpc_method="GetWorkload",
                    grpc_code="OK",
                ),
                series(
                    "grpc_server_handled_total",
                    "0+30x20",
                    **GRPC,
                    grpc_method="GetWorkload",
                    grpc_code="NotFound",
                ),
                series(
                    "grpc_server_handled_total",
                    "0+20x20",
                    **GRPC,
                    grpc_method="SubmitWorkloads",
                    grpc_code="InvalidArgument",
                ),
            ],
            "15m",
            [],
        ),
    ],
    "ValleyPendingWorkloadsGrowing": [
        (
            "300 pending and growing by 10 a minute",
            [series("valley_workloads", "0+10x40", state="pending")],
            "30m",
            [({"job": "valley"}, "300 workloads pending and the queue keeps growing")],
        ),
        (
            "many pending but not growing",
            [series("valley_workloads", "500x40", state="pending")],
            "30m",
            [],
        ),
        (
            "growing but still few",
            [series("valley_workloads", "0+1x40", state="pending")],
            "30m",
            [],
        ),
        (
            "placed workloads do not count",
            [series("valley_workloads", "0+10x40", state="placed")],
            "30m",
            [],
        ),
    ],
    "ValleySolverGapHigh": [
        (
            "gap of 10% for 20 minutes",
            [series("valley_last_cycle_gap_ratio", "0.1x30")],
            "20m",
            [({**JOB}, "Valley's placements are 10% from the proven optimum")],
        ),
        ("gap of 1%", [series("valley_last_cycle_gap_ratio", "0.01x30")], "20m", []),
        (
            "no bound proven (NaN)",
            [series("valley_last_cycle_gap_ratio", repeat("NaN", 31))],
            "20m",
            [],
        ),
        (
            "a high gap for 5 minutes only",
            [series("valley_last_cycle_gap_ratio", "0.01x15 0.2x5")],
            "20m",
            [],
        ),
    ],
    "ValleySiteNearCapacity": [
        (
            "E-Town CPU 95% allocated, Zhangbei half",
            [
                series("valley_site_utilisation_ratio", "0.95x20", site="etown", resource="cpu"),
                series("valley_site_utilisation_ratio", "0.5x20", site="zhangbei", resource="cpu"),
            ],
            "15m",
            [
                (
                    {"job": "valley", "site": "etown", "resource": "cpu"},
                    "Site etown is 95% allocated in cpu",
                )
            ],
        ),
        (
            "every site below 90%",
            [
                series("valley_site_utilisation_ratio", "0.85x20", site="etown", resource="gpu"),
                series("valley_site_utilisation_ratio", "0.2x20", site="zhangbei", resource="gpu"),
            ],
            "15m",
            [],
        ),
    ],
    "ValleyUnschedulableWorkloads": [
        (
            "one SLO failure appears",
            [
                series("valley_workloads_unschedulable_total", "0 0 0 1" + " 1" * 16, reason="slo"),
                series("valley_workloads_unschedulable_total", "0x20", reason="capacity"),
            ],
            "5m",
            [
                (
                    {"job": "valley", "reason": "slo"},
                    "Workloads became unschedulable (slo) in the last 10 minutes",
                )
            ],
        ),
        (
            "old failures only",
            [series("valley_workloads_unschedulable_total", "3x20", reason="slo")],
            "15m",
            [],
        ),
    ],
    "ValleySchedulingCycleSlow": [
        (
            "every cycle takes 2.5 to 5 s",
            histogram(
                "valley_cycle_duration_seconds",
                {"0.5": 0, "1.0": 0, "2.5": 0, "5.0": 6, "+Inf": 6},
                30,
            ),
            "20m",
            [({"job": "valley"}, "Valley scheduling cycles take 4.975s (p99)")],
        ),
        (
            "every cycle under 0.5 s",
            histogram(
                "valley_cycle_duration_seconds",
                {"0.5": 6, "1.0": 6, "2.5": 6, "5.0": 6, "+Inf": 6},
                30,
            ),
            "20m",
            [],
        ),
    ],
    "ValleySolverFallbacks": [
        (
            "a fallback every minute",
            [series("valley_solver_fallbacks_total", "0+1x30")],
            "20m",
            [
                (
                    {"job": "valley"},
                    "The solver fell back to the greedy answer more than 3 times in 15 minutes",
                )
            ],
        ),
        (
            "two fallbacks, then none",
            [series("valley_solver_fallbacks_total", "0 1 2" + " 2" * 27)],
            "10m",
            [],
        ),
    ],
    "ValleySchedulingLoopStalled": [
        (
            "workloads arrive, no cycle ever ran",
            [
                series("valley_workloads_submitted_total", "0+10x20", kind="batch"),
                series("valley_last_cycle_timestamp_seconds", "0x20"),
            ],
            "10m",
            [
                (
                    {"job": "valley"},
                    "Workloads arrive but Valley has not run a scheduling cycle for 2 minutes",
                )
            ],
        ),
        (
            "workloads arrive and cycles run",
            [
                series("valley_workloads_submitted_total", "0+10x20", kind="batch"),
                series("valley_last_cycle_timestamp_seconds", "0+60x20"),
            ],
            "10m",
            [],
        ),
        (
            "no cycle because nothing arrives",
            [
                series("valley_workloads_submitted_total", "5x20", kind="batch"),
                series("valley_last_cycle_timestamp_seconds", "0x20"),
            ],
            "15m",
            [],
        ),
    ],
    "ValleySnapshotFailing": [
        (
            "every scrape fails to read the snapshot",
            [series("valley_snapshot_errors_total", "0+1x20")],
            "10m",
            [({"job": "valley"}, "Valley cannot read its state snapshot for metrics")],
        ),
        ("snapshots read fine", [series("valley_snapshot_errors_total", "0x20")], "10m", []),
    ],
}

_LABEL_TEMPLATE = re.compile(r"\{\{\s*\$labels\.(\w+)\s*\}\}")


def load_alerts() -> dict[str, dict[str, Any]]:
    alerts: dict[str, dict[str, Any]] = {}
    for path in sorted(RULES.glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    alerts[rule["alert"]] = rule
    return alerts


def expected_description(rule: dict[str, Any], labels: dict[str, str]) -> str:
    text = _LABEL_TEMPLATE.sub(
        lambda m: labels.get(m.group(1), ""), rule["annotations"]["description"]
    )
    if "{{" in text:
        raise ValueError(
            f"{rule['alert']}: descriptions may only use {{{{ $labels.X }}}} templates"
        )
    return text


def build() -> dict[str, Any]:
    alerts = load_alerts()
    missing = sorted(set(alerts) - set(CASES))
    unknown = sorted(set(CASES) - set(alerts))
    if missing or unknown:
        raise SystemExit(
            f"alerts without test cases: {missing}; cases for unknown alerts: {unknown}"
        )
    tests = []
    for name, cases in CASES.items():
        rule = alerts[name]
        for case, inputs, eval_time, expected in cases:
            exp = []
            for labels, summary in expected:
                all_labels = {**labels, **rule.get("labels", {})}
                exp.append(
                    {
                        "exp_labels": all_labels,
                        "exp_annotations": {
                            "summary": summary,
                            "description": expected_description(rule, all_labels),
                            "runbook_url": rule["annotations"]["runbook_url"],
                        },
                    }
                )
            tests.append(
                {
                    "name": f"{name}: {case}",
                    "interval": "1m",
                    "input_series": inputs,
                    "alert_rule_test": [
                        {"eval_time": eval_time, "alertname": name, "exp_alerts": exp}
                    ],
                }
            )
    return {
        "rule_files": [f"../rules/{p.name}" for p in sorted(RULES.glob("*.yml"))],
        "evaluation_interval": "1m",
        "tests": tests,
    }


def render() -> str:
    header = (
        "# Generated by deploy/prometheus/tests/generate.py - edit the cases there, then run it.\n"
        "# promtool test rules deploy/prometheus/tests/*.yml\n"
    )
    return header + yaml.safe_dump(build(), sort_keys=False, width=100, allow_unicode=True)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT} is stale: run python deploy/prometheus/tests/generate.py")
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
