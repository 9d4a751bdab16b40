"""deploy/k8s: the manifests parse, and their probes, ports, store, secret and policy seed match the app."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.main import create_app
from tests.conftest import MODEL_STORE, POLICIES, make_settings
from tests.deploy.conftest import DEPLOY

K8S = DEPLOY / "k8s"
# Needs the Prometheus Operator's CRD: applied on its own, never by `kubectl apply -k`.
OPERATOR_ONLY = {"servicemonitor.yaml"}


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    docs = [d for f in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    return {d["kind"]: d for d in docs}


def test_every_kind_is_there_and_kustomization_lists_every_file(manifests: dict[str, dict[str, Any]]) -> None:
    assert {"Deployment", "Service", "ConfigMap", "HorizontalPodAutoscaler", "PodDisruptionBudget",
            "PersistentVolumeClaim", "ServiceMonitor"} <= set(manifests)
    listed = set(manifests["Kustomization"]["resources"])
    assert listed == {f.name for f in K8S.glob("*.yaml")} - {"kustomization.yaml"} - OPERATOR_ONLY


def test_probes_and_ports_match_the_app(manifests: dict[str, dict[str, Any]]) -> None:
    paths = set(create_app(make_settings()).openapi()["paths"])
    container = manifests["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["http"]
    env = {e["name"]: e.get("value") for e in container["env"]}
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


def test_the_store_is_a_shared_writable_volume_not_the_image(manifests: dict[str, dict[str, Any]]) -> None:
    spec = manifests["Deployment"]["spec"]["template"]["spec"]
    container = spec["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "store")
    assert not mount.get("readOnly") and "subPath" not in mount  # the admin API writes rollout.yaml there
    for name in ("FUSIONRANK_MODEL_STORE", "FUSIONRANK_POLICIES"):
        assert env[name].startswith(mount["mountPath"] + "/"), name
    claim = next(v for v in spec["volumes"] if v["name"] == "store")["persistentVolumeClaim"]["claimName"]
    pvc = manifests["PersistentVolumeClaim"]
    assert pvc["metadata"]["name"] == claim and pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_the_admin_token_comes_from_a_secret(manifests: dict[str, dict[str, Any]]) -> None:
    container = manifests["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    token = next(e for e in container["env"] if e["name"] == "FUSIONRANK_ADMIN_TOKEN")
    assert "value" not in token and token["valueFrom"]["secretKeyRef"]["name"] == "fusionrank-admin"
    texts = "\n".join(f.read_text() for f in K8S.glob("*.yaml"))
    assert "kind: Secret" not in texts  # created by hand, never committed


def test_replicas_spread_and_a_service_monitor_scrapes_them(manifests: dict[str, dict[str, Any]]) -> None:
    template = manifests["Deployment"]["spec"]["template"]
    labels = template["metadata"]["labels"]
    spread = template["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    assert all(c["labelSelector"]["matchLabels"].items() <= labels.items() for c in spread)
    monitor = manifests["ServiceMonitor"]["spec"]
    service = manifests["Service"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["endpoints"]] == [p["name"] for p in service["spec"]["ports"]]
    assert monitor["endpoints"][0]["path"] == template["metadata"]["annotations"]["prometheus.io/path"]
    # The rules select job="fusionrank": a ServiceMonitor's job label is the Service's name.
    assert service["metadata"]["name"] == "fusionrank"


def test_the_seed_container_fills_an_empty_store_once(manifests: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """Run the init container's shell command on a ConfigMap-like folder (..data symlinks, as the kubelet
    writes) and the image's model_store: the store gets the repository's policies and bundle, loads, and a
    second run overwrites nothing."""
    spec = manifests["Deployment"]["spec"]["template"]["spec"]
    seed = next(c for c in spec["initContainers"] if c["name"] == "seed-store")
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    seed_mount = next(m for m in seed["volumeMounts"] if m["name"] == "policies-seed")["mountPath"]
    volume = next(v for v in spec["volumes"] if v["name"] == "policies-seed")["configMap"]
    data = manifests["ConfigMap"]["data"]
    assert volume["name"] == manifests["ConfigMap"]["metadata"]["name"]
    assert {i["key"] for i in volume["items"]} == set(data)
    configmap = tmp_path / "configmap"
    (configmap / "..2026_12_06").mkdir(parents=True)
    (configmap / "..data").symlink_to("..2026_12_06")
    for item in volume["items"]:
        target = configmap / "..2026_12_06" / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(data[item["key"]])
        top = item["path"].split("/")[0]
        if not (configmap / top).exists():
            (configmap / top).symlink_to(f"..data/{top}")
    store = tmp_path / "store"
    command = seed["command"][-1]
    for image_path, local in (("/srv/fusionrank/store", store), ("/srv/fusionrank/model_store", MODEL_STORE),
                              (seed_mount, configmap)):
        command = command.replace(image_path, str(local))
    policies = Path(env["FUSIONRANK_POLICIES"].replace("/srv/fusionrank/store", str(store)))
    model_store = Path(env["FUSIONRANK_MODEL_STORE"].replace("/srv/fusionrank/store", str(store)))
    subprocess.run(["sh", "-c", command], check=True, timeout=30, env={"PATH": os.environ["PATH"]})
    shipped = {str(p.relative_to(POLICIES)): p.read_text() for p in POLICIES.rglob("*") if p.is_file()}
    seeded = {str(p.relative_to(policies)): p.read_text() for p in policies.rglob("*") if p.is_file()}
    assert seeded == shipped
    assert not any(p.is_symlink() for p in policies.rglob("*"))
    bundle = {str(p.relative_to(MODEL_STORE)) for p in MODEL_STORE.rglob("*") if p.is_file()}
    assert {str(p.relative_to(model_store)) for p in model_store.rglob("*") if p.is_file()} == bundle
    from app.control.loader import load_snapshot

    snapshot = load_snapshot(model_store, policies)
    assert not snapshot.problems and set(snapshot.surfaces) == {"home"}
    (policies / "home" / "active").write_text("2\n")  # a change made through the admin API since
    subprocess.run(["sh", "-c", command], check=True, timeout=30, env={"PATH": os.environ["PATH"]})
    assert (policies / "home" / "active").read_text() == "2\n"
