"""Every row of docs/reliability.md's artifact-fault table, at startup and at hot swap.

Each fault is planted in a new candidate: model bundle `demo_ranker/2` (a copy of version 1) and
policy `home/4.yaml` (the shipped versions are 1 to 3) that serves it. At startup `home/active` names 4:
the surface is not served, `/readyz` stays 503 and lists the problem naming the file. At swap the service
starts on version 1 and the admin API activates 4: the answer is a 422 naming the problem, version 1 keeps
serving, the failure is counted in `fusionrank_policy_activation_failures_total` and logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

import app.control.loader as loader_module
from tests.conftest import ADMIN, ADMIN_TOKEN, POLICIES

Fault = Callable[[Path, Path, pytest.MonkeyPatch], None]


def _bundle_2(store: Path) -> Path:
    """model_store/demo_ranker/2: version 1 relabelled, its calibration pointing at it."""
    bundle = store / "demo_ranker" / "2"
    shutil.copytree(store / "demo_ranker" / "1", bundle)
    _edit_json(bundle / "manifest.json", lambda m: m.update(version="2"))
    _edit_json(bundle / "calibration" / "1.json", lambda c: c["model"].update(version="2"))
    return bundle


def _policy_4(policies: Path, edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    data: dict[str, Any] = yaml.safe_load((POLICIES / "home" / "1.yaml").read_text())
    data["version"] = "4"
    data["model"]["version"] = "2"
    if edit is not None:
        edit(data)
    path = policies / "home" / "4.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _edit_json(path: Path, edit: Callable[[Any], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _reseal(bundle: Path) -> None:
    """Make the manifest's sha match model.onnx again (so that the ONNX parser is what must object)."""
    sha = hashlib.sha256((bundle / "model.onnx").read_bytes()).hexdigest()
    _edit_json(bundle / "manifest.json", lambda m: m.update(model_sha256=sha))
    _edit_json(bundle / "calibration" / "1.json", lambda c: c["model"].update(sha256=sha))


def truncated_onnx(store: Path, policies: Path, _: pytest.MonkeyPatch) -> None:
    bundle = _bundle_2(store)
    onnx = bundle / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[: onnx.stat().st_size // 2])
    _reseal(bundle)
    _policy_4(policies)


def corrupt_onnx(store: Path, policies: Path, _: pytest.MonkeyPatch) -> None:
    bundle = _bundle_2(store)
    (bundle / "model.onnx").write_bytes(b"\x08\x07garbage, not a protobuf\xff" * 100)
    _reseal(bundle)
    _policy_4(policies)


def sha_mismatch(store: Path, policies: Path, _: pytest.MonkeyPatch) -> None:
    bundle = _bundle_2(store)
    with (bundle / "model.onnx").open("ab") as f:
        f.write(b"\0")
    _policy_4(policies)


def manifest_schema(store: Path, policies: Path, _: pytest.MonkeyPatch) -> None:
    bundle = _bundle_2(store)
    _edit_json(bundle / "manifest.json", lambda m: m.update(tasks="click"))
    _policy_4(policies)


def calibration_schema(store: Path, policies: Path, _: pytest.MonkeyPatch) -> None:
    bundle = _bundle_2(store)
    _edit_json(bundle / "calibration" / "1.json", lambda c: c.update(surprise=1))
    _policy_4(policies)


def policy_schema(_: Path, policies: Path, __: pytest.MonkeyPatch) -> None:
    _policy_4(policies, lambda p: p.update(model={"name": "demo_ranker", "version": "1"}, top_k="ten"))


def calibration_for_other_model(store: Path, policies: Path, _: pytest.MonkeyPatch) -> None:
    bundle = _bundle_2(store)
    _edit_json(bundle / "calibration" / "1.json", lambda c: c["model"].update(sha256="0" * 64))
    _policy_4(policies)


def non_monotone_isotonic(store: Path, policies: Path, _: pytest.MonkeyPatch) -> None:
    bundle = _bundle_2(store)

    def edit(c: dict[str, Any]) -> None:
        task = next(iter(c["tasks"]))
        c["tasks"][task]["calibrator"] = {"method": "isotonic", "x": [-2.0, 0.0, 2.0], "y": [0.1, 0.5, 0.3]}

    _edit_json(bundle / "calibration" / "1.json", edit)
    _policy_4(policies)


def unknown_task(_: Path, policies: Path, __: pytest.MonkeyPatch) -> None:
    def edit(p: dict[str, Any]) -> None:
        p["model"]["version"] = "1"
        p["utility"][0]["task"] = "dwell_time"

    _policy_4(policies, edit)


def unknown_attribute(_: Path, policies: Path, __: pytest.MonkeyPatch) -> None:
    def edit(p: dict[str, Any]) -> None:
        p["model"]["version"] = "1"
        p["utility"][1]["attribute"] = "price_in_gold"

    _policy_4(policies, edit)


def yaml_alias_bomb(_: Path, policies: Path, __: pytest.MonkeyPatch) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join(f'*a{i - 1}' for _ in range(9))}]" for i in range(1, 10)]
    (policies / "home" / "4.yaml").write_text("\n".join(lines) + "\n")


def dotdot_version(_: Path, policies: Path, __: pytest.MonkeyPatch) -> None:
    _policy_4(policies, lambda p: p["model"].update(version="../../../etc"))


def absolute_version(_: Path, policies: Path, __: pytest.MonkeyPatch) -> None:
    _policy_4(policies, lambda p: p["model"].update(version="/etc/passwd"))


def symlink_out_of_store(store: Path, policies: Path, _: pytest.MonkeyPatch) -> None:
    outside = store.parent / "outside" / "2"
    shutil.copytree(store / "demo_ranker" / "1", outside)
    _edit_json(outside / "manifest.json", lambda m: m.update(version="2"))
    _edit_json(outside / "calibration" / "1.json", lambda c: c["model"].update(version="2"))
    (store / "demo_ranker" / "2").symlink_to(outside, target_is_directory=True)
    _policy_4(policies)


def policy_symlink_out(_: Path, policies: Path, __: pytest.MonkeyPatch) -> None:
    secret = policies.parent / "not_a_policy.yaml"
    secret.write_text("password: hunter2\n")
    (policies / "home" / "4.yaml").symlink_to(secret)


def vanishes_during_load(store: Path, policies: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = _bundle_2(store)
    _policy_4(policies)
    real = loader_module.load_manifest

    def load_then_vanish(bundle_dir: Path, **kwargs: Any) -> Any:
        manifest = real(bundle_dir, **kwargs)
        if bundle_dir == bundle:  # deleted after the manifest was read, before onnxruntime opens it
            (bundle / "model.onnx").unlink(missing_ok=True)
        return manifest

    monkeypatch.setattr(loader_module, "load_manifest", load_then_vanish)


def half_written_policy(_: Path, policies: Path, __: pytest.MonkeyPatch) -> None:
    text = _policy_4(policies, lambda p: p["model"].update(version="1")).read_text()
    (policies / "home" / "4.yaml").write_text(text[: len(text) // 2])


def permission_denied(_: Path, policies: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _policy_4(policies, lambda p: p["model"].update(version="1"))
    if os.geteuid() != 0:
        path.chmod(0)
        return
    # Root reads any file whatever its mode: make reading this one file fail as it would for a user.
    real = os.open

    def open_(file: Any, *args: Any, **kwargs: Any) -> int:
        if Path(file) == path:  # root opens any file whatever its mode: refuse as the kernel would for a user
            raise PermissionError(13, "Permission denied", str(file))
        return real(file, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)


# fault -> a phrase the error must contain (it also always names the file)
FAULTS: dict[str, tuple[Fault, str]] = {
    "truncated model.onnx": (truncated_onnx, "model.onnx"),
    "corrupt model.onnx": (corrupt_onnx, "model.onnx"),
    "sha256 mismatch": (sha_mismatch, "model_sha256"),
    "manifest fails schema": (manifest_schema, "tasks"),
    "calibration fails schema": (calibration_schema, "surprise"),
    "policy fails schema": (policy_schema, "top_k"),
    "calibration for another model": (calibration_for_other_model, "sha"),
    "non-monotone isotonic table": (non_monotone_isotonic, "increasing"),
    "policy names an unknown task": (unknown_task, "dwell_time"),
    "policy names an unknown attribute": (unknown_attribute, "price_in_gold"),
    "YAML alias bomb": (yaml_alias_bomb, "alias"),
    "version with ../": (dotdot_version, "model.version"),
    "version as an absolute path": (absolute_version, "model.version"),
    "bundle symlinked out of the store": (symlink_out_of_store, "outside"),
    "policy symlinked out of the folder": (policy_symlink_out, "outside"),
    "model.onnx vanishes during the load": (vanishes_during_load, "model.onnx"),
    "half-written policy file": (half_written_policy, "4.yaml"),
    "permission denied": (permission_denied, "ermission denied"),
}


def _start(store: Path, policies: Path, **overrides: Any) -> TestClient:
    from app.main import create_app
    from tests.conftest import make_settings

    settings = make_settings(store, policies, policy_watch_interval=0, persist_pointers=False, **overrides)
    return TestClient(create_app(settings))


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_fault_at_startup_keeps_readyz_503_and_names_the_file(
    name: str, store_copy: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store, policies = store_copy
    plant, phrase = FAULTS[name]
    plant(store, policies, monkeypatch)
    (policies / "home" / "active").write_text("4\n")
    with caplog.at_level(logging.ERROR, logger="fusionrank"), _start(store, policies) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        problems = "\n".join(ready.json()["problems"])
        assert "4.yaml" in problems or "demo_ranker/2" in problems or "outside" in problems, problems
        assert phrase in problems, problems
        assert "fix" in problems
        answer = client.post("/v1/score", json={"surface": "home", "candidates": []})
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "not_ready"
    assert phrase in caplog.text


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_fault_at_swap_keeps_the_old_bundle_serving(
    name: str,
    store_copy: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    sample_request: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, policies = store_copy
    with _start(store, policies, admin_tokens={"ops": ADMIN_TOKEN}) as client:
        before = client.post("/v1/score", json=sample_request).json()["versions"]
        plant, phrase = FAULTS[name]
        plant(store, policies, monkeypatch)
        with caplog.at_level(logging.WARNING, logger="fusionrank"):
            refused = client.post("/admin/policies/home/activate", json={"version": "4"}, headers=ADMIN)
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert phrase in json.dumps(error), error
        assert error["details"] and all("fix" in d or "fix" in d["message"] for d in error["details"])
        assert phrase in caplog.text
        served = client.post("/v1/score", json=sample_request)
        assert served.status_code == 200
        assert served.json()["versions"] == before
        assert client.get("/readyz").status_code == 200
        metrics = client.get("/metrics").text
        assert 'fusionrank_policy_activation_failures_total{source="api",surface="home"} 1.0' in metrics
