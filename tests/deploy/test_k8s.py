"""deploy/k8s: the manifests parse, and their probes, ports and policy files match the app."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from app.main import create_app
from tests.conftest import POLICIES, make_settings
from tests.deploy.conftest import DEPLOY

K8S = DEPLOY / "k8s"


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    docs = [d for f in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    return {d["kind"]: d for d in docs}


def test_every_kind_is_there_and_kustomization_lists_every_file(manifests: dict[str, dict[str, Any]]) -> None:
    assert {"Deployment", "Service", "ConfigMap", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= set(manifests)
    listed = set(manifests["Kustomization"]["resources"])
    assert listed == {f.name for f in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_probes_and_ports_match_the_app(manifests: dict[str, dict[str, Any]]) -> None:
    paths = set(create_app(make_settings()).openapi()["paths"])
    container = manifests["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["http"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["FUSIONRANK_PORT"] == str(port)
    probes = {k: container[k]["httpGet"] for k in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert probes["livenessProbe"]["path"] == "/healthz"
    for probe in probes.values():
        assert probe["path"] in paths
        assert probe["port"] in ("http", port)
    annotations = manifests["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] in paths and annotations["prometheus.io/port"] == str(port)
    assert container["resources"]["requests"] and container["resources"]["limits"]
    service_port = manifests["Service"]["spec"]["ports"][0]
    assert service_port["targetPort"] in ("http", port)
    selector = manifests["Service"]["spec"]["selector"]
    assert selector.items() <= manifests["Deployment"]["spec"]["template"]["metadata"]["labels"].items()
    hpa = manifests["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == manifests["Deployment"]["metadata"]["name"]
    assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]


def test_policy_configmap_mounts_as_the_policies_folder(manifests: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    spec = manifests["Deployment"]["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "policies")
    assert mount["mountPath"] == env["FUSIONRANK_POLICIES"] and "subPath" not in mount  # subPath never updates
    volume = next(v for v in spec["volumes"] if v["name"] == "policies")["configMap"]
    data = manifests["ConfigMap"]["data"]
    assert volume["name"] == manifests["ConfigMap"]["metadata"]["name"]
    assert {i["key"] for i in volume["items"]} == set(data)
    # What the kubelet would write, file by file, is exactly the repository's policies/ folder ...
    for item in volume["items"]:
        target = tmp_path / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(data[item["key"]])
    shipped = {str(p.relative_to(POLICIES)): p.read_text() for p in POLICIES.rglob("*") if p.is_file()}
    mounted = {str(p.relative_to(tmp_path)): p.read_text() for p in tmp_path.rglob("*") if p.is_file()}
    assert mounted == shipped
    # ... and the service loads it.
    from app.control.loader import load_snapshot

    snapshot = load_snapshot(Path(env["FUSIONRANK_MODEL_STORE"].replace("/srv/fusionrank/", "")), tmp_path)
    assert not snapshot.problems and set(snapshot.surfaces) == {"home"}
