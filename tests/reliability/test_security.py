"""Security promises: no unsafe deserialisation on the serving path, paths stay in the store,
the admin token is never logged or echoed, CORS is off, the container runs non-root and read-only."""

from __future__ import annotations

import ast
import logging
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from tests.conftest import ADMIN, ADMIN_TOKEN, ROOT

SERVING_PATH = ("app/api", "app/serving", "app/artifacts", "app/monitoring", "app/main.py", "app/settings.py")
# Modules and calls that deserialise or execute arbitrary input.
FORBIDDEN_MODULES = {"pickle", "cPickle", "dill", "marshal", "shelve", "joblib", "cloudpickle", "subprocess"}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}


def _sources() -> list[Path]:
    files: list[Path] = []
    for part in SERVING_PATH:
        path = ROOT / part
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return files


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in FORBIDDEN_MODULES:
            found.append(f"from {node.module} import")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in FORBIDDEN_CALLS:
                found.append(f"{func.id}()")
            if isinstance(func, ast.Attribute) and func.attr in {"load", "load_all", "unsafe_load", "full_load"}:
                owner = func.value
                if isinstance(owner, ast.Name) and owner.id == "yaml":
                    loader = next((k.value for k in node.keywords if k.arg == "Loader"), None)
                    if not (isinstance(loader, ast.Name) and loader.id == "_BoundedLoader"):
                        found.append(f"yaml.{func.attr}() without the bounded safe loader")
            if (
                isinstance(func, ast.Attribute) and func.attr == "load" and isinstance(func.value, ast.Name)
                and func.value.id == "np" and not any(k.arg == "allow_pickle" for k in node.keywords)
            ):
                found.append("np.load() (allow_pickle must be explicit and False)")
    return [f"{path.relative_to(ROOT)}:{v}" for v in found]


# The served log's compactor starts one child process: this interpreter on its own module, a fixed argument
# list, no shell (checked below). Nothing else on the serving path may start a process.
ALLOWED = {"app/monitoring/log_compactor.py:import subprocess"}


def test_no_pickle_eval_or_unsafe_yaml_on_the_serving_path() -> None:
    sources = _sources()
    assert len(sources) > 30
    assert [v for path in sources for v in _violations(path) if v not in ALLOWED] == []
    compactor = ast.parse((ROOT / "app" / "monitoring" / "log_compactor.py").read_text())
    calls = [n for n in ast.walk(compactor) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and isinstance(n.func.value, ast.Name) and n.func.value.id == "subprocess"]
    assert [c.func.attr for c in calls] == ["Popen"]  # type: ignore[attr-defined]
    assert isinstance(calls[0].args[0], ast.List) and not any(k.arg == "shell" for k in calls[0].keywords)


def test_the_checker_itself_finds_what_it_forbids() -> None:
    probe = ROOT / "app" / "_probe_security_check.py"
    probe.write_text("import pickle\nimport yaml\nyaml.load(s)\neval('1')\nfrom marshal import loads\n")
    try:
        assert len(_violations(probe)) == 4
    finally:
        probe.unlink()


def test_yaml_bomb_is_refused_fast() -> None:
    from app.artifacts.safe_yaml import YamlTooLarge, load_bounded_yaml

    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join(f'*a{i - 1}' for _ in range(9))}]" for i in range(1, 10)]
    with pytest.raises(YamlTooLarge, match="alias"):
        load_bounded_yaml("\n".join(lines))
    with pytest.raises(YamlTooLarge, match="alias"):
        load_bounded_yaml("&a [*a, *a]")  # recursive
    with pytest.raises(YamlTooLarge, match="bytes"):
        load_bounded_yaml("x: " + "y" * (1024 * 1024 + 1))
    # Ordinary anchors within the bound still load; and safe_load semantics (no Python objects).
    assert load_bounded_yaml("a: &x [1, 2]\nb: *x\n") == {"a": [1, 2], "b": [1, 2]}
    with pytest.raises(yaml.YAMLError):
        load_bounded_yaml("!!python/object/apply:os.system ['true']")


def test_admin_paths_never_leave_the_policies_folder(client_factory: Callable[..., TestClient]) -> None:
    client = client_factory(admin_tokens={"ops": ADMIN_TOKEN}, persist_pointers=False)
    for version in ("../../etc/passwd", "/etc/passwd", "..", ".hidden", "1/../../x"):
        r = client.post("/admin/policies/home/validate", json={"version": version}, headers=ADMIN)
        assert r.status_code == 422, (version, r.text)
        assert r.json()["error"]["details"][0]["field"] == "version"
    # A raw `..` surface segment (HTTP clients normalise it away; a raw socket does not) is an
    # unknown surface: surfaces are looked up among the loaded ones, never joined to a path first.
    from app.errors import NotFound

    registry = client.app.state.policy_registry  # type: ignore[attr-defined]
    for surface in ("..", "../home", "/etc"):
        with pytest.raises(NotFound, match="unknown surface"):
            registry.activate_policy(surface, "1", who="test")


def test_the_admin_token_is_never_logged_or_echoed(
    client_factory: Callable[..., TestClient], caplog: pytest.LogCaptureFixture, store_copy: tuple[Path, Path]
) -> None:
    store, policies = store_copy
    with caplog.at_level(logging.DEBUG):
        client = client_factory(store=store, policies=policies, admin_tokens={"ops": ADMIN_TOKEN})
        wrong = "wrong-token-abcdefghijklmnop"
        answers = [
            client.get("/admin/policies", headers=ADMIN),
            client.post("/admin/policies/home/activate", json={"version": "2"}, headers=ADMIN),
            client.get("/admin/policies", headers={"authorization": f"Bearer {wrong}"}),
            client.get("/admin/policies", headers={"authorization": ADMIN_TOKEN}),
        ]
    assert [a.status_code for a in answers] == [200, 200, 401, 401]
    for secret in (ADMIN_TOKEN, wrong):
        assert secret not in caplog.text
        assert all(secret not in a.text and secret not in str(a.headers) for a in answers)
    metrics = client.get("/metrics").text
    assert ADMIN_TOKEN not in metrics
    assert 'fusionrank_admin_auth_failures_total{reason="invalid"} 1.0' in metrics
    assert 'fusionrank_admin_auth_failures_total{reason="missing"} 1.0' in metrics


def test_cors_is_off_by_default(client: TestClient) -> None:
    preflight = client.options(
        "/v1/score",
        headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
    )
    assert preflight.status_code in (404, 405)
    assert not any(h.lower().startswith("access-control-") for h in preflight.headers)
    simple = client.get("/healthz", headers={"origin": "https://evil.example"})
    assert not any(h.lower().startswith("access-control-") for h in simple.headers)


def test_container_runs_non_root_with_a_read_only_root_filesystem() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in {"root", "0", "0:0"}
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    service = compose["services"]["scorer"]
    assert service.get("read_only") is True
    deployment = yaml.safe_load((ROOT / "deploy" / "k8s" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = next(c for c in pod["containers"] if c["name"] == "scorer")
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]


def test_ruff_security_rules_are_enabled() -> None:
    config = (ROOT / "pyproject.toml").read_text()
    select = next(line for line in config.splitlines() if line.strip().startswith("select"))
    assert '"S"' in select


def test_nothing_listens_beyond_loopback_by_default() -> None:
    from app.settings import Settings

    assert Settings.model_fields["host"].default == "127.0.0.1"
    assert socket.inet_aton(Settings.model_fields["host"].default)
