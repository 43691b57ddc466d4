"""``valley bench service`` runs both servers and reports the API's columns (a short run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from scheduler.bench.service import COLUMNS, command
from scheduler.bench.tenants import COLUMNS as TENANT_COLUMNS
from scheduler.bench.tenants import PHASES

pytest_plugins = ["tests.pg"]


def test_bench_service_reports_valley_and_noop_rows() -> None:
    result = CliRunner().invoke(
        command,
        ["--rate", "200", "--duration", "1", "--batch", "20", "--drain", "10", "--output", "json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["suite"] == "service"
    rows = {r["policy"]: r for r in report["rows"]}
    assert set(rows) == {"valley", "noop"}
    for r in rows.values():
        assert set(r) == set(COLUMNS)
        assert r["errors"] == 0
        assert r["accepted_per_second"] > 0 and r["placed_per_second"] > 0
        assert r["rss_mib"] > 0


def test_bench_service_reports_a_row_per_store_when_given_postgresql(postgres_url: str) -> None:
    result = CliRunner().invoke(
        command,
        [
            *("--rate", "200", "--duration", "1", "--batch", "20", "--drain", "10"),
            *("--only", "valley", "--store", "sqlite", "--store", postgres_url, "--output", "json"),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["params"]["stores"] == ["sqlite", "postgresql"]  # no URL: it may hold a password
    rows = report["rows"]
    assert [(r["policy"], r["store"]) for r in rows] == [
        ("valley", "sqlite"),
        ("valley", "postgresql"),
    ]
    for r in rows:
        assert r["errors"] == 0 and r["placed_per_second"] > 0


def test_bench_service_two_tenants_reports_the_quiet_tenant_alone_and_under_floods(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the servers run this checkout's code, whichever one the environment installed
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    result = CliRunner().invoke(
        command,
        [
            *("--two-tenants", "--duration", "0.5", "--quiet-rate", "10", "--flood-quota", "50"),
            *("--rounds", "2", "--channels", "1", "--drain", "10", "--output", "json"),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["suite"] == "service-two-tenants"
    rows = {r["phase"]: r for r in report["rows"]}
    assert set(rows) == set(PHASES)
    for r in rows.values():
        assert set(r) == set(TENANT_COLUMNS)
        assert r["quiet_placed"] == r["quiet_sent"] == 10
    assert rows["alone"]["flood_accepted"] == 0
    assert rows["flood-rate-quota"]["flood_refused"] > 0
    assert rows["flood-no-quota"]["flood_refused"] == 0
    assert rows["flood-no-quota"]["flood_accepted"] > 0  # the flooder's process reported back
    assert report["params"]["rounds"] == 2  # two rounds of 5 quiet workloads pooled per phase
