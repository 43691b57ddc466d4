"""deploy/ checked by the tools its formats have, offline: the Kubernetes manifests against the
Kubernetes API schemas (kubernetes-validate), the Dockerfile by hadolint, the compose file against
the compose specification (check-jsonschema); every pod template against the "restricted" Pod
Security Standard; the probes; what the image holds. The tools are dev dependencies."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
# Kubernetes objects (prometheus-scrape.yaml is a Prometheus configuration fragment)
MANIFESTS = [DEPLOY / "k8s" / "valley.yaml"]
# a release kubernetes-validate bundles schemas of; grpc probes are GA since 1.27
KUBERNETES_VERSION = "1.31.0"


def tool(name: str) -> str:
    """The dev tool's executable: beside this Python (the virtualenv) or on PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: it is a dev dependency (scripts/setup.sh)")
    return found


def objects(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def pod_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod spec(s) an object creates pods from."""
    kind = obj["kind"]
    if kind == "Pod":
        return [obj["spec"]]
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
        return [obj["spec"]["template"]["spec"]]
    if kind == "CronJob":
        return [obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]]
    return []


POD_TEMPLATES = [
    pytest.param(obj, id=f"{path.name}:{obj['kind']}/{obj['metadata']['name']}")
    for path in MANIFESTS
    for obj in objects(path)
    if pod_specs(obj)
]

RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(spec: dict[str, Any]) -> list[str]:
    """What the "restricted" Pod Security Standard (Kubernetes 1.31, baseline rules included)
    refuses in a pod spec; empty when it admits the pod."""
    out = [f"spec.{k}: true" for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k)]
    pod = spec.get("securityContext", {})
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            out.append(f"volume {volume['name']}: type {sorted(kinds)}")
    if pod.get("runAsUser") == 0:
        out.append("pod runAsUser: 0")
    if pod.get("seccompProfile", {}).get("type") == "Unconfined":
        out.append("pod seccompProfile: Unconfined")
    containers = [
        *spec.get("initContainers", []),
        *spec.get("containers", []),
        *spec.get("ephemeralContainers", []),
    ]
    for c in containers:
        sc = c.get("securityContext", {})
        name = c["name"]
        if sc.get("privileged"):
            out.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation is not false")
        if not sc.get("runAsNonRoot", pod.get("runAsNonRoot")):
            out.append(f"{name}: runAsNonRoot is not true (pod or container)")
        if sc.get("runAsUser") == 0:
            out.append(f"{name}: runAsUser: 0")
        seccomp = sc.get("seccompProfile", pod.get("seccompProfile", {})).get("type")
        if seccomp not in {"RuntimeDefault", "Localhost"}:
            out.append(f"{name}: seccompProfile {seccomp} (RuntimeDefault or Localhost)")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            out.append(f"{name}: capabilities do not drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            out.append(f"{name}: adds capabilities {caps['add']}")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            out.append(f"{name}: hostPort")
        if sc.get("procMount", "Default") != "Default":
            out.append(f"{name}: procMount {sc['procMount']}")
    return out


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_kubernetes_manifests_match_the_kubernetes_api_schemas(path: Path) -> None:
    import kubernetes_validate

    for obj in objects(path):
        name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        try:  # strict: a misspelt or misplaced field is an error, not ignored
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{path.name} {name}: {e.message} at {list(e.absolute_path)}")


def test_dockerfile_passes_hadolint() -> None:
    run = subprocess.run(
        [tool("hadolint"), "--no-color", str(DEPLOY / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_compose_file_matches_the_compose_specification() -> None:
    run = subprocess.run(
        [
            tool("check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(DEPLOY / "compose.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("obj", POD_TEMPLATES)
def test_pod_template_is_admitted_by_the_restricted_pod_security_standard(
    obj: dict[str, Any],
) -> None:
    for spec in pod_specs(obj):
        assert restricted_violations(spec) == []


def test_restricted_check_refuses_a_container_that_may_escalate_or_run_as_root() -> None:
    (obj,) = (o for o in objects(MANIFESTS[0]) if o["kind"] == "Deployment")
    spec = copy.deepcopy(pod_specs(obj)[0])
    container = spec["containers"][0]
    del container["securityContext"]["allowPrivilegeEscalation"]
    spec["securityContext"]["runAsNonRoot"] = False
    spec["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    assert restricted_violations(spec) == [
        "volume host: type ['hostPath']",
        "valley: allowPrivilegeEscalation is not false",
        "valley: runAsNonRoot is not true (pod or container)",
    ]


@pytest.mark.parametrize("obj", POD_TEMPLATES)
def test_containers_write_only_to_their_volumes(obj: dict[str, Any]) -> None:
    for spec in pod_specs(obj):
        for c in spec["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, c["name"]
            mounts = {m["mountPath"] for m in c["volumeMounts"]}
            assert {"/data", "/tmp"} <= mounts, c["name"]


@pytest.mark.parametrize("obj", POD_TEMPLATES)
def test_liveness_checks_the_process_and_readiness_its_grpc_health(obj: dict[str, Any]) -> None:
    for spec in pod_specs(obj):
        for c in spec["containers"]:
            grpc_port = next(p["containerPort"] for p in c["ports"] if p["name"] == "grpc")
            # readiness follows the store (health NOT_SERVING while it is away); liveness must
            # not, or a database outage would restart every replica
            assert c["readinessProbe"]["grpc"]["port"] == grpc_port
            liveness = c["livenessProbe"]
            assert "httpGet" not in liveness, "liveness must not go through /metrics"
            assert liveness.get("tcpSocket", {}).get("port") in {"grpc", grpc_port}


def test_image_user_is_the_numeric_user_the_pods_run_as() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    (user,) = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    for param in POD_TEMPLATES:
        (obj,) = param.values
        for spec in pod_specs(obj):
            pod = spec["securityContext"]
            assert user == f"{pod['runAsUser']}:{pod['runAsGroup']}"


def test_dockerignore_sends_only_what_the_dockerfile_copies() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert patterns[0] == "*"
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    copied = {
        part.rstrip("/")
        for line in dockerfile.splitlines()
        if line.startswith("COPY ")
        for part in line.split()[1:-1]
    }
    assert {p.lstrip("!").rstrip("/") for p in patterns if p.startswith("!")} == copied


# Runs Python with the bench extra's packages absent (None in sys.modules makes importing fail).
WITHOUT_BENCH_EXTRA = """
import sys
for name in ("tqdm", "matplotlib"):
    sys.modules[name] = None
"""


def python_without_bench_extra(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_BENCH_EXTRA + code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_module_but_the_benchmarks_imports_without_the_bench_extra() -> None:
    run = python_without_bench_extra(
        """
import importlib, pkgutil, scheduler
for m in pkgutil.walk_packages(scheduler.__path__, "scheduler."):
    if not m.name.startswith("scheduler.bench") and not m.name.endswith("__main__"):
        importlib.import_module(m.name)
from scheduler.cli import cli
cli(["serve", "--help"])
"""
    )
    assert run.returncode == 0, run.stderr
    assert "--store" in run.stdout


def test_bench_says_how_to_install_its_extra_when_it_is_missing() -> None:
    run = python_without_bench_extra(
        'from scheduler.cli import cli\ncli(["bench", "scenario", "--replicas", "10"])'
    )
    assert run.returncode == 1
    assert "tqdm, matplotlib" in run.stderr
    assert "pip install 'valley-scheduler[bench]'" in run.stderr
