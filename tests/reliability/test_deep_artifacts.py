"""No artifact can crash the process or the watcher (red-team row: deeply nested policy YAML / calibration JSON).

A policy YAML nested ~500 deep (under 1 kB) anywhere under `policies/<surface>/`, or a deeply nested
calibration JSON, used to raise RecursionError: start-up failed (exit 3), the watcher failed every
pass and never applied later edits, admin activation and `/admin/models` answered 500. Now each
is a named ArtifactError: an inactive bad file never stops start-up, a bad active file leaves only
its surface unserved (with the reason in /readyz and `fusionrank_surface_ready`), the watcher keeps
applying later edits, the admin API answers 4xx naming the file.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from app.control.surface_sync import SurfaceSync
from app.control.watcher import PolicyWatcher
from tests.conftest import ADMIN, ADMIN_TOKEN, write_policy

DEPTH = 495


def deep_policy(surface: str = "home", version: str = "9") -> str:
    """The red-team file: a policy whose `name` is a list nested ~500 deep, about a kilobyte."""
    text = f"schema_version: 1\nsurface: {surface}\nversion: '{version}'\nname: " + "[" * DEPTH + "]" * DEPTH + "\n"
    assert len(text) < 1100
    return text


def deep_json() -> str:
    return '{"schema_version": 1, "tasks": ' + "[" * DEPTH + "]" * DEPTH + "}"


def add_surface(policies: Path, surface: str) -> Path:
    """A second surface, `surface`, serving a copy of home's policy 1."""
    folder = policies / surface
    folder.mkdir()
    data: dict[str, Any] = yaml.safe_load((policies / "home" / "1.yaml").read_text())
    data["surface"] = surface
    (folder / "1.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    (folder / "active").write_text("1\n")
    return folder


def _start(factory: Callable[..., TestClient], store: Path, policies: Path) -> TestClient:
    return factory(store=store, policies=policies, policy_watch_interval=3600, admin_token=ADMIN_TOKEN)


def _score(client: TestClient, sample: dict[str, Any], surface: str = "home") -> Any:
    return client.post("/v1/score", json=dict(sample, surface=surface))


def test_startup_with_a_deep_inactive_policy_serves_and_names_the_file(
    client_factory: Callable[..., TestClient], store_copy: tuple[Path, Path], sample_request: dict[str, Any]
) -> None:
    store, policies = store_copy
    (policies / "home" / "9.yaml").write_text(deep_policy())
    client = _start(client_factory, store, policies)
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert any("9.yaml" in p and "nests deeper than 32 levels" in p for p in ready.json()["problems"])
    assert _score(client, sample_request).status_code == 200
    assert "fusionrank_artifact_problems 1.0" in client.get("/metrics").text
    # An unrelated edit applied by the watcher leaves the bad file named; repairing it clears it.
    watcher: PolicyWatcher = client.app.state.policy_watcher  # type: ignore[attr-defined]
    (policies / "home" / "active").write_text("2\n")
    assert [(c.action, c.outcome) for c in watcher.poll_once()] == [("activate", "applied")]
    assert [p for p in client.get("/readyz").json()["problems"] if "9.yaml" in p] == [
        p for p in ready.json()["problems"] if "9.yaml" in p
    ]
    (policies / "home" / "9.yaml").unlink()
    write_policy(policies, "9")
    assert [(c.action, c.outcome) for c in watcher.poll_once()] == [("load", "applied")]
    assert client.get("/readyz").json()["problems"] == []


@pytest.mark.parametrize("bad", ["policy", "pin", "pointer"])
def test_a_deep_active_file_leaves_only_its_surface_unserved(
    bad: str, client_factory: Callable[..., TestClient], store_copy: tuple[Path, Path],
    sample_request: dict[str, Any],
) -> None:
    store, policies = store_copy
    search = add_surface(policies, "search")
    if bad == "policy":
        (search / "9.yaml").write_text(deep_policy("search"))
        (search / "active").write_text("9\n")
    elif bad == "pin":
        (search / "bundle").write_text("[" * DEPTH + "]" * DEPTH)
    else:
        (search / "active").write_text("9" * 100_000)  # no pointer is 100 kB
    client = _start(client_factory, store, policies)
    ready = client.get("/readyz")
    assert ready.status_code == 200 and list(ready.json()["surfaces"]) == ["home"]
    reason = {"policy": "nests deeper", "pin": "nests deeper", "pointer": "larger than 4096 bytes"}[bad]
    assert any(str(search) in p and reason in p for p in ready.json()["problems"]), ready.json()["problems"]
    assert _score(client, sample_request).status_code == 200
    refused = _score(client, sample_request, "search")
    assert refused.status_code == 503 and reason in refused.json()["error"]["message"]
    for path, body in (("/admin/policies/search/activate", {"version": "1"}),
                       ("/admin/surfaces/search/activate", {"policy_version": "1"})):
        admin = client.post(path, json=body, headers=ADMIN)
        assert admin.status_code == 409 and reason in admin.json()["error"]["message"], admin.text
    assert "search" in client.get("/admin/policies", headers=ADMIN).json()["unserved"]
    metrics = client.get("/metrics").text
    assert 'fusionrank_surface_ready{surface="home"} 1.0' in metrics
    assert 'fusionrank_surface_ready{surface="search"} 0.0' in metrics
    # Fixing the file serves the surface at the next watcher pass.
    (search / "active").write_text("1\n")
    (search / "bundle").unlink(missing_ok=True)
    watcher: PolicyWatcher = client.app.state.policy_watcher  # type: ignore[attr-defined]
    watcher.poll_once()
    assert _score(client, sample_request, "search").status_code == 200
    assert 'fusionrank_surface_ready{surface="search"} 1.0' in client.get("/metrics").text


def test_the_watcher_refuses_a_deep_file_then_applies_a_later_valid_edit(
    client_factory: Callable[..., TestClient], store_copy: tuple[Path, Path], sample_request: dict[str, Any]
) -> None:
    store, policies = store_copy
    client = _start(client_factory, store, policies)
    watcher: PolicyWatcher = client.app.state.policy_watcher  # type: ignore[attr-defined]
    (policies / "home" / "9.yaml").write_text(deep_policy())
    os.mkfifo(policies / "home" / "8.yaml")  # opening it for reading would block the watcher forever
    changes = watcher.poll_once()
    assert [(c.action, c.after, c.outcome) for c in changes] == [("load", "8", "refused"), ("load", "9", "refused")]
    assert "not a regular file" in (changes[0].error or "")
    assert "9.yaml" in (changes[1].error or "") and "nests deeper" in (changes[1].error or "")
    assert 'fusionrank_policy_file_rejections_total{surface="home"} 2.0' in client.get("/metrics").text
    # A later edit on the same surface is applied, the deep file still lying there.
    write_policy(policies, "5", lambda p: p["utility"][0].update(weight=2.0))
    (policies / "home" / "active").write_text("5\n")
    changes = watcher.poll_once()
    assert [(c.action, c.after, c.outcome) for c in changes] == [("load", "5", "applied"), ("activate", "5", "applied")]
    assert _score(client, sample_request).json()["versions"]["policy_version"] == "5"


def test_a_failing_watcher_pass_is_logged_once_counted_and_the_next_pass_runs(
    client_factory: Callable[..., TestClient], store_copy: tuple[Path, Path], sample_request: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """Defence in depth: whatever escapes a pass (a bug), the watcher survives it."""
    store, policies = store_copy
    client = _start(client_factory, store, policies)
    watcher: PolicyWatcher = client.app.state.policy_watcher  # type: ignore[attr-defined]
    real = SurfaceSync.run

    def boom(self: SurfaceSync) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(SurfaceSync, "run", boom)
    with caplog.at_level(logging.ERROR, logger="fusionrank.registry"):
        for version in ("3", "4"):
            write_policy(policies, version)
            assert watcher.poll_once() == []
    failures = [r for r in caplog.records if "watcher pass over policies/home failed" in r.getMessage()]
    assert len(failures) == 1 and "RecursionError" in failures[0].getMessage()  # once per reason
    assert 'fusionrank_policy_watch_failures_total{surface="home"} 2.0' in client.get("/metrics").text
    monkeypatch.setattr(SurfaceSync, "run", real)
    (policies / "home" / "active").write_text("2\n")
    changes = watcher.poll_once()
    assert [(c.action, c.after, c.outcome) for c in changes] == [("activate", "2", "applied")]
    assert _score(client, sample_request).json()["versions"]["policy_version"] == "2"


def test_admin_activation_of_a_deep_version_answers_422_naming_the_file(
    client_factory: Callable[..., TestClient], store_copy: tuple[Path, Path], sample_request: dict[str, Any]
) -> None:
    store, policies = store_copy
    client = _start(client_factory, store, policies)
    (policies / "home" / "9.yaml").write_text(deep_policy())
    for path, body in (
        ("/admin/policies/home/activate", {"version": "9"}),
        ("/admin/policies/home/validate", {"version": "9"}),
        ("/admin/policies/home/shadow", {"version": "9"}),
        ("/admin/surfaces/home/activate", {"policy_version": "9"}),
        ("/admin/surfaces/home/canary", {"policy_version": "9", "fraction": 0.1}),
    ):
        response = client.post(path, json=body, headers=ADMIN)
        assert response.status_code == 422, (path, response.text)
        message = response.json()["error"]["message"]
        assert "9.yaml" in message and "nests deeper than 32 levels" in message, message
    assert client.get("/admin/policies", headers=ADMIN).status_code == 200
    assert _score(client, sample_request).json()["versions"]["policy_version"] == "1"


def test_admin_models_lists_a_deep_calibration_as_invalid(
    client_factory: Callable[..., TestClient], store_copy: tuple[Path, Path], sample_request: dict[str, Any]
) -> None:
    store, policies = store_copy
    bundle = store / "demo_ranker" / "1"
    (bundle / "calibration" / "7.json").write_text(deep_json())
    broken = store / "demo_ranker" / "8"
    shutil.copytree(bundle, broken)
    (broken / "manifest.json").write_text(deep_json())
    client = _start(client_factory, store, policies)
    response = client.get("/admin/models", headers=ADMIN)
    assert response.status_code == 200
    models = {m["version"]: m for m in response.json()["models"]}
    calibrations = {c["version"]: c for c in models["1"]["calibrations"]}
    assert calibrations["1"]["valid"] is True
    assert calibrations["7"]["valid"] is False and "7.json: nests deeper" in calibrations["7"]["problem"]
    assert models["8"]["valid"] is False and "manifest.json: nests deeper" in models["8"]["problem"]
    # Activating it answers 422 with the reason; what is served does not change.
    activate = client.post("/admin/surfaces/home/activate", json={"calibration_version": "7"}, headers=ADMIN)
    assert activate.status_code == 422 and "nests deeper" in activate.json()["error"]["message"]
    assert _score(client, sample_request).json()["versions"]["calibration_version"] == "1"


def test_an_unexpected_error_on_one_surface_at_start_up_leaves_the_others_served(
    client_factory: Callable[..., TestClient], store_copy: tuple[Path, Path], sample_request: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Defence in depth: whatever escapes the loading of one surface's files (a bug) stays on that surface."""
    store, policies = store_copy
    add_surface(policies, "search")
    import app.control.loader as loader

    real = loader.read_pin

    def read_pin(surface_dir: Path) -> Any:
        if surface_dir.name == "search":
            raise RecursionError("maximum recursion depth exceeded")
        return real(surface_dir)

    monkeypatch.setattr(loader, "read_pin", read_pin)
    client = _start(client_factory, store, policies)
    ready = client.get("/readyz").json()
    assert list(ready["surfaces"]) == ["home"]
    assert any("search" in p and "RecursionError" in p for p in ready["problems"])
    assert _score(client, sample_request).status_code == 200
    assert _score(client, sample_request, "search").status_code == 503


def test_admin_models_lists_an_unreadable_model_file_as_invalid(
    client_factory: Callable[..., TestClient], store_copy: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, policies = store_copy
    client = _start(client_factory, store, policies)
    model = store / "demo_ranker" / "1" / "model.onnx"
    import app.control.store as store_module

    real = store_module.sha256_file

    def sha256_file(path: Path) -> str:
        if path == model:  # root reads any file whatever its mode: refuse as the kernel would for a user
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(store_module, "sha256_file", sha256_file)
    response = client.get("/admin/models", headers=ADMIN)
    assert response.status_code == 200
    (entry,) = response.json()["models"]
    assert entry["valid"] is False and "Permission denied" in entry["problem"]
