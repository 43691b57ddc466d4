"""``valley bench service`` runs both servers and reports the API's columns (a short run)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from scheduler.bench.service import COLUMNS, command


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
