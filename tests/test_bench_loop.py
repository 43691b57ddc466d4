"""``valley bench loop``: one leader places a submitted backlog, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json

from click.testing import CliRunner

from scheduler.bench.loop import COLUMNS, command

pytest_plugins = ["tests.pg"]


def test_bench_loop_places_the_backlog_on_each_store(postgres_url: str) -> None:
    result = CliRunner().invoke(
        command,
        ["--replicas", "300", "--store", "sqlite", "--store", postgres_url, "--output", "json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["rows"]
    assert [r["store"] for r in rows] == ["sqlite", "postgresql"]
    for r in rows:
        assert set(r) == set(COLUMNS)
        assert r["nodes"] == 6144 and r["replicas"] == 300
        assert r["cycles"] >= 1 and r["commit_s_max"] > 0
        assert r["placed"] + r["unschedulable"] + r["pending"] == r["workloads"]
        assert r["placed"] > 0
