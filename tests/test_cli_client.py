"""The ``valley`` client commands against a real server on loopback, and workload files."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from wcwidth import wcswidth

from scheduler.cli import cli, load_workload_file
from scheduler.domain import Scenario
from tests.test_service_support import Client, cpu_spec, serve, until

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def server(beijing_hebei: Scenario, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(beijing_hebei, Path(tmp_path_factory.mktemp("cli"))) as (valley, _):
        yield f"127.0.0.1:{valley.port}"


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def ok(*args: str) -> str:
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result.output


def submit_json(server: str, path: Path) -> list[dict[str, object]]:
    out: list[dict[str, object]] = json.loads(
        ok("submit", str(path), "--server", server, "-o", "json")
    )
    return out


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.iterdir()))
def test_every_example_file_is_accepted(server: str, example: str) -> None:
    accepted = submit_json(server, EXAMPLES / example)
    assert accepted and all(w["state"] == "WORKLOAD_STATE_PENDING" for w in accepted)


def test_get_list_explain_cancel_and_sites_show_what_happened(server: str) -> None:
    (quotes, *_) = submit_json(server, EXAMPLES / "web-services.yaml")
    wid = str(quotes["id"])

    def placed() -> bool:
        return json.loads(ok("get", wid, "--server", server, "-o", "json"))["state"] == (
            "WORKLOAD_STATE_PLACED"
        )

    until(placed, 30, "placed")
    shown = ok("get", wid, "--server", server)
    assert "PLACED" in shown and "etown/cpu-" in shown  # a 2 ms SLO from Zhongguancun: E-Town
    explained = ok("explain", wid, "--server", server)
    assert "slo: RTT 4.0 ms from zhongguancun > SLO 2.0 ms" in explained
    listed = ok("list", "--server", server, "--tenant", "zgc-fintech", "--state", "placed")
    assert wid in listed
    sites = ok("sites", "--server", server)
    assert "etown" in sites and "zhangbei" in sites
    nodes = json.loads(ok("sites", "--nodes", "--server", server, "-o", "json"))
    assert sum(len(s["nodes"]) for s in nodes["sites"]) == 6144
    assert "CANCELLED" in ok("cancel", wid, "--server", server)


WATCH = [sys.executable, "-m", "scheduler.cli", "watch"]


@pytest.mark.parametrize("states", [[], ["--state", "placed"]])
def test_watch_prints_state_changes_of_the_tenant(server: str, states: list[str]) -> None:
    # a real process: CliRunner swaps sys.stdout for the whole process, so two at once clash
    watcher = subprocess.Popen(
        [*WATCH, "--server", server, "--tenant", "watched", "--count", "1", "-o", "json", *states],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = Client.connect(int(server.rpartition(":")[2]))
    try:
        # the stream opens asynchronously: keep submitting until the watcher has seen one
        for _ in range(150):
            client.submit([cpu_spec(0.5, tenant="other"), cpu_spec(0.5, tenant="watched")])
            try:
                watcher.wait(0.2)
                break
            except subprocess.TimeoutExpired:
                continue
    finally:
        client.close()
        if watcher.poll() is None:
            watcher.kill()
    out, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, err
    event = json.loads(out.splitlines()[0])
    assert event["workload"]["spec"]["tenant"] == "watched"
    if states:  # only changes into PLACED
        assert "PLACED" in event["workload"]["state"], event["workload"]["state"]
    # the first event seen may be the creation of a workload or the placement of one created
    # just before the stream opened
    assert event["previous_state"] in ("WORKLOAD_STATE_UNSPECIFIED", "WORKLOAD_STATE_PENDING")


def test_resubmitting_a_file_with_a_request_id_creates_nothing_new(server: str) -> None:
    path = str(EXAMPLES / "never-fits.yaml")
    first = json.loads(ok("submit", path, "--server", server, "--request-id", "nf-1", "-o", "json"))
    again = json.loads(ok("submit", path, "--server", server, "--request-id", "nf-1", "-o", "json"))
    assert [w["id"] for w in again] == [w["id"] for w in first]


def test_resubmitting_with_a_request_id_does_not_say_workloads_were_accepted(server: str) -> None:
    # the response does not say whether it was a repeat: the note must not claim new workloads
    path = str(EXAMPLES / "never-fits.yaml")
    ok("submit", path, "--server", server, "--request-id", "nf-2")
    again = run("submit", path, "--server", server, "--request-id", "nf-2")
    assert again.exit_code == 0, again.output
    assert "accepted" not in again.stderr
    assert "2 workloads for request id nf-2" in again.stderr
    assert "creates nothing new" in again.stderr


def test_submitting_one_workload_says_one_workload_accepted(server: str, tmp_path: Path) -> None:
    path = tmp_path / "one.yaml"
    path.write_text("tenant: solo\nresources: {cpu_millis: 500, memory_mib: 256}\n")
    result = run("submit", str(path), "--server", server)
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == "1 workload accepted"


def test_list_lines_up_columns_when_the_tenant_name_is_chinese(server: str, tmp_path: Path) -> None:
    path = tmp_path / "cn.yaml"
    path.write_text(
        "- tenant: 中关村金融\n  name: quotes\n  resources: {cpu_millis: 500, memory_mib: 256}\n",
        encoding="utf-8",
    )
    ok("submit", str(path), "--server", server)
    header, _, row = ok("list", "--server", server, "--tenant", "中关村金融").splitlines()[:3]
    # 中关村金融 is five characters but ten columns on screen
    assert wcswidth(row[: row.index("quotes")]) == wcswidth(header[: header.index("NAME")])


def test_an_unreachable_server_is_a_clear_error_without_a_traceback() -> None:
    result = CliRunner().invoke(cli, ["list", "--server", "127.0.0.1:1", "--timeout", "5"])
    assert result.exit_code != 0
    assert "cannot reach the Valley server at 127.0.0.1:1" in result.output
    assert "Traceback" not in result.output


def test_an_unknown_id_is_a_clear_error(server: str) -> None:
    result = run("get", "w-nope", "--server", server)
    assert result.exit_code != 0 and "NOT_FOUND" in result.output


def test_a_server_side_validation_error_points_at_the_file_line(
    server: str, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "- tenant: a\n"
        "  resources: {cpu_millis: 1000, memory_mib: 1024}\n"
        "- tenant: b\n"
        "  resources:\n"
        "    cpu_millis: -5\n"
        "    memory_mib: 1024\n"
    )
    result = run("submit", str(bad), "--server", server)
    assert result.exit_code != 0
    assert f"{bad}:5: workloads[1].resources.cpu_millis: must be > 0" in result.output


def test_a_server_side_validation_error_lists_every_violation_with_its_line(
    server: str, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "- tenant: a\n"
        "  resources:\n"
        "    cpu_millis: -5\n"
        "    memory_mib: 1024\n"
        "- tenant: b\n"
        "  origin: mars\n"
        "  resources: {cpu_millis: 1000, memory_mib: 1024}\n"
    )
    result = run("submit", str(bad), "--server", server)
    assert result.exit_code != 0
    assert "2 problems" in result.output
    assert f"{bad}:3: workloads[0].resources.cpu_millis: must be > 0" in result.output
    assert f"{bad}:6: workloads[1].origin: unknown origin 'mars'" in result.output


def test_a_reachable_server_whose_store_is_down_is_told_from_an_unreachable_one(
    beijing_hebei: Scenario, tmp_path: Path
) -> None:
    with serve(beijing_hebei, tmp_path) as (valley, _):
        valley.store.close()  # the server answers; its store does not
        result = run("list", "--server", f"127.0.0.1:{valley.port}", "--timeout", "5")
    assert result.exit_code != 0
    assert "reachable but its store is unavailable" in result.output
    assert "cannot reach" not in result.output


BAD_FILES = [
    (
        "unknown field",
        "- tenant: a\n  resourcs: {cpu_millis: 1}\n",
        2,
        "workloads[0].resourcs: unknown field",
    ),
    (
        "text for a number",
        "- tenant: a\n  replicas: three\n",
        2,
        "workloads[0].replicas: expected a whole number",
    ),
    ("number for text", "- tenant: 42\n", 1, "workloads[0].tenant: expected text"),
    (
        "unknown kind",
        "- tenant: a\n  kind: daemon\n",
        2,
        "unknown value 'daemon' (known: service, batch)",
    ),
    ("unclosed list", "tenant: [a\n", 2, "flow sequence started on line 1"),
    ("a scalar", "42\n", 1, "expected a list of workload specs"),
    (
        "bad resource key",
        "- tenant: a\n  resources:\n    cpus: 2\n",
        3,
        "workloads[0].resources.cpus: unknown field",
    ),
    ("bad deadline", "- tenant: a\n  deadline: tomorrow\n", 2, "expected an RFC 3339 time"),
    (
        "out of int32",
        "- tenant: a\n  replicas: 99999999999\n",
        2,
        "out of range for a 32-bit integer",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "message"), [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES]
)
def test_a_bad_workload_file_names_file_line_and_problem(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(text)
    with pytest.raises(Exception) as e:
        load_workload_file(str(path))
    assert str(e.value.message).startswith(f"{path}:{line}: "), e.value.message  # type: ignore[attr-defined]
    assert message in e.value.message  # type: ignore[attr-defined]


def test_a_json_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    path.write_text('[{"tenant": "a",\n  "replicas": 3,,}]')
    with pytest.raises(Exception) as e:
        load_workload_file(str(path))
    assert str(e.value.message).startswith(f"{path}:2: invalid JSON")  # type: ignore[attr-defined]


def test_workload_files_accept_a_list_one_spec_or_a_mapping_with_request_id(tmp_path: Path) -> None:
    one = tmp_path / "one.yaml"
    one.write_text("tenant: a\nresources: {cpu_millis: 1000, memory_mib: 64}\nkind: SERVICE\n")
    wf = load_workload_file(str(one))
    assert len(wf.specs) == 1 and wf.specs[0].kind == 1
    wrapped = tmp_path / "wrapped.yaml"
    wrapped.write_text("request_id: r-7\nworkloads:\n  - tenant: a\n    topology: gang\n")
    wf = load_workload_file(str(wrapped))
    assert wf.request_id == "r-7" and wf.specs[0].topology == 1


def test_a_dry_run_shows_where_workloads_would_go_and_stores_nothing(
    server: str, tmp_path: Path
) -> None:
    path = tmp_path / "dry.yaml"
    path.write_text("tenant: dry-run-only\nresources: {cpu_millis: 500, memory_mib: 256}\n")
    result = run("submit", str(path), "--server", server, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "dry run, nothing stored: 1 of 1 workloads would be placed now" in result.stderr
    assert "PLACED" in result.stdout
    assert "dry-run-only" not in ok("list", "--server", server, "--tenant", "dry-run-only")


def test_cordon_and_uncordon_show_the_nodes_and_sites_marks_them(server: str) -> None:
    node = "etown/cpu-0000"
    result = run("cordon", node, "--server", server)
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == "1 node cordoned"
    assert node in result.stdout and "cordoned" in result.stdout
    line = next(x for x in ok("sites", "--nodes", "--server", server).splitlines() if node in x)
    assert line.rstrip().endswith("cordoned")
    result = run("uncordon", node, "--server", server)
    assert result.exit_code == 0 and result.stderr.strip() == "1 node uncordoned"
    line = next(x for x in ok("sites", "--nodes", "--server", server).splitlines() if node in x)
    assert not line.rstrip().endswith("cordoned")
    bad = run("cordon", "etown/nope", "--server", server)
    assert bad.exit_code != 0 and "nodes[0]" in bad.output


def test_drain_dry_run_prints_the_plan_and_cordons_nothing(server: str) -> None:
    node = "zhangbei/cpu-0003"
    result = run("drain", node, "--dry-run", "--server", server)
    assert result.exit_code == 0, result.output
    assert "would move" in result.stderr and "stay" in result.stderr
    line = next(x for x in ok("sites", "--nodes", "--server", server).splitlines() if node in x)
    assert not line.rstrip().endswith("cordoned")


def test_rebalance_dry_run_prints_the_plan(server: str) -> None:
    result = run("rebalance", "--dry-run", "--max-moves", "10", "--server", server)
    assert result.exit_code == 0, result.output
    assert "would move" in result.stderr and "CNY/h" in result.stderr
