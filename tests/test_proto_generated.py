"""The checked-in generated code is exactly what `make proto` produces from the proto."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ROOT / "scheduler" / "_proto"


def test_checked_in_generated_code_matches_the_proto(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    if shutil.which("bash") is None:
        pytest.skip("bash is needed to run scripts/gen_proto.sh")
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "gen_proto.sh"), sys.executable, str(tmp_path)],
        check=True,
        cwd=ROOT,
    )
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    checked_in = sorted(
        p.relative_to(GENERATED)
        for p in GENERATED.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    assert fresh == checked_in, "run `make proto` and commit scheduler/_proto/"
    stale = [
        str(rel) for rel in fresh if not filecmp.cmp(tmp_path / rel, GENERATED / rel, shallow=False)
    ]
    assert stale == [], f"out of date (run `make proto`): {stale}"


def test_generated_services_carry_the_api_names() -> None:
    from scheduler._proto.valley.v1 import placement_pb2

    services = placement_pb2.DESCRIPTOR.services_by_name
    # API.md's names, all kept; RPCs may be added
    assert set(services["PlacementService"].methods_by_name) >= {
        "SubmitWorkloads",
        "GetWorkload",
        "ListWorkloads",
        "CancelWorkload",
        "WatchWorkloads",
        "ExplainWorkload",
    }
    assert set(services["ClusterService"].methods_by_name) == {"ListSites"}
    assert placement_pb2.DESCRIPTOR.package == "valley.v1"
