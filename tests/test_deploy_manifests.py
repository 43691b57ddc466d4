"""The compose file and the Kubernetes manifests agree with the rest of deploy/ (no container
runtime runs them here: these checks keep paths, ports and names consistent)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def test_compose_mounts_files_that_exist() -> None:
    (compose,) = docs(DEPLOY / "compose.yaml")
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source}"
    grafana = compose["services"]["grafana"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (DEPLOY / "grafana" / "dashboards" / Path(home).name).is_file()


def test_compose_prometheus_listens_where_the_grafana_datasource_points() -> None:
    (compose,) = docs(DEPLOY / "compose.yaml")
    (ds,) = docs(DEPLOY / "grafana" / "provisioning" / "datasources" / "valley.yml")
    listen = next(
        a for a in compose["services"]["prometheus"]["command"] if a.startswith("--web.listen")
    )
    assert ds["datasources"][0]["url"] == "http://" + listen.split("=", 1)[1]


def test_kubernetes_service_exposes_the_ports_valley_serves_on() -> None:
    objects = {(o["kind"], o["metadata"]["name"]): o for o in docs(DEPLOY / "k8s" / "valley.yaml")}
    deployment = objects[("Deployment", "valley")]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert f"--grpc-address=0.0.0.0:{ports['grpc']}" in container["args"]
    assert f"--metrics-address=0.0.0.0:{ports['metrics']}" in container["args"]
    service = objects[("Service", "valley")]
    assert {p["name"] for p in service["spec"]["ports"]} == {"grpc", "metrics"}
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_kubernetes_scrape_job_keeps_the_job_name_the_rules_use() -> None:
    (config,) = docs(DEPLOY / "k8s" / "prometheus-scrape.yaml")
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "valley"
    keep = next(r for r in job["relabel_configs"] if r["action"] == "keep")
    assert keep["regex"] == "valley;metrics"
