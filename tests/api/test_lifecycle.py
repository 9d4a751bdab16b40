"""Model and calibration lifecycle through the admin API (in process): activation, rollback, refused
bundles, canary share and stickiness, the shadow model under a stalled candidate, memory after swaps."""

from __future__ import annotations

import copy
import gc
import json
import os
import shutil
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.artifacts.common import sha256_file
from app.artifacts.rollout import ROLLOUT_FILE, dump_rollout, load_rollout
from app.control.pins import read_pin
from app.serving.model_runner import ModelRunner
from tests.conftest import ADMIN, ADMIN_TOKEN
from tests.lifecycle_helpers import build_store

Factory = Callable[..., TestClient]


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, Path]:
    return build_store(tmp_path)


@pytest.fixture
def service(store: tuple[Path, Path], client_factory: Factory) -> TestClient:
    model_store, policies = store
    return client_factory(store=model_store, policies=policies, admin_tokens={"ops": ADMIN_TOKEN},
                          policy_watch_interval=0)


def _serving(client: TestClient) -> dict[str, Any]:
    body: dict[str, Any] = client.get("/admin/models", headers=ADMIN).json()
    return body


def _activate(client: TestClient, **versions: str) -> Any:
    return client.post("/admin/surfaces/home/activate", json=versions, headers=ADMIN)


def _score(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/score", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_activate_a_calibration_then_a_model_then_roll_back(
    service: TestClient, store: tuple[Path, Path], sample_request: dict[str, Any]
) -> None:
    _, policies = store
    stable = _serving(service)["surfaces"]["home"]["stable"]
    assert (stable["model_version"], stable["calibration_version"], stable["policy_version"]) == ("1", "1", "1")

    change = _activate(service, calibration_version="2").json()
    assert change["outcome"] == "applied" and change["persisted"] is True
    assert _score(service, sample_request)["versions"]["calibration_version"] == "2"
    declared = load_rollout(policies / "home" / ROLLOUT_FILE)  # written for restarts and the other replicas
    assert (declared.active.model_version, declared.active.calibration_version) == ("1", "2")

    # The model changes, the calibration version stays (model 2 has a calibration "2" too).
    _activate(service, model_version="2")
    versions = _score(service, sample_request)["versions"]
    assert (versions["model_version"], versions["calibration_version"]) == ("2", "2")
    listing = _serving(service)
    by_key = {f"{m['model']}/{m['version']}": m for m in listing["models"]}
    assert by_key["demo_ranker/2"]["served_by"] == ["home:stable"]
    assert by_key["demo_ranker/2"]["golden_max_abs_diff"] is not None
    assert by_key["demo_ranker/2"]["golden_max_abs_diff"] <= 1e-5
    assert [c["version"] for c in by_key["demo_ranker/2"]["calibrations"]] == ["1", "2"]

    rolled = service.post("/admin/surfaces/home/rollback", headers=ADMIN).json()
    assert rolled["action"] == "rollback" and rolled["outcome"] == "applied"
    versions = _score(service, sample_request)["versions"]
    assert (versions["model_version"], versions["calibration_version"]) == ("1", "2")
    # Back to the policy file's own triple: the pin is no longer needed and is removed.
    service.post("/admin/surfaces/home/rollback", headers=ADMIN)
    assert _score(service, sample_request)["versions"]["calibration_version"] == "1"
    assert read_pin(policies / "home") is None
    assert service.post("/admin/surfaces/home/rollback", headers=ADMIN).status_code == 409

    # The policy API still works, and keeps a pin: the new policy runs on the pinned triple.
    _activate(service, model_version="2", calibration_version="1")
    policy = yaml_policy(policies, "7")
    assert policy.is_file()
    assert service.post("/admin/policies/home/activate", json={"version": "7"}, headers=ADMIN).status_code == 200
    versions = _score(service, sample_request)["versions"]
    assert (versions["model_version"], versions["policy_version"]) == ("2", "7")


def yaml_policy(policies: Path, version: str) -> Path:
    from tests.conftest import write_policy

    return write_policy(policies, version)


def _corrupt_variants(store: Path) -> dict[str, str]:
    """Model versions that must never serve, by what is wrong with them."""
    source = store / "demo_ranker" / "2"
    out = {}
    # 3: bytes flipped in model.onnx, manifest untouched -> sha256 mismatch
    flipped = store / "demo_ranker" / "3"
    shutil.copytree(source, flipped)
    data = bytearray((flipped / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (flipped / "model.onnx").write_bytes(bytes(data))
    _rewrite(flipped, "3", sha=False)
    out["3"] = "sha256"
    # 4: another model's weights with a matching sha256 -> only the golden batch catches it
    swapped = store / "demo_ranker" / "4"
    shutil.copytree(source, swapped)
    shutil.copy(store / "demo_ranker" / "1" / "model.onnx", swapped / "model.onnx")
    _rewrite(swapped, "4", sha=True)
    out["4"] = "golden"
    # 5: not an ONNX file at all, sha256 matching
    garbage = store / "demo_ranker" / "5"
    shutil.copytree(source, garbage)
    (garbage / "model.onnx").write_bytes(b"\x08\x07garbage" * 100)
    _rewrite(garbage, "5", sha=True)
    out["5"] = "onnxruntime"
    return out


def _rewrite(bundle: Path, version: str, *, sha: bool) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["version"] = version
    if sha:
        manifest["model_sha256"] = sha256_file(bundle / "model.onnx")
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    for path in (bundle / "calibration").glob("*.json"):
        calibration = json.loads(path.read_text())
        calibration["model"].update(version=version, sha256=manifest["model_sha256"])
        path.write_text(json.dumps(calibration))


def test_a_corrupt_model_never_replaces_the_serving_one(
    store: tuple[Path, Path], client_factory: Factory, sample_request: dict[str, Any]
) -> None:
    model_store, policies = store
    service = client_factory(store=model_store, policies=policies, admin_tokens={"ops": ADMIN_TOKEN},
                             policy_watch_interval=0)
    _activate(service, model_version="2")
    before = _score(service, sample_request)
    variants = _corrupt_variants(model_store)
    for version, why in variants.items():
        response = _activate(service, model_version=version)
        assert response.status_code == 422, (version, response.text)
        assert why in response.text.lower() or (why == "onnxruntime" and "onnx" in response.text.lower())
        canary = service.post("/admin/surfaces/home/canary", json={"model_version": version, "fraction": 0.5},
                              headers=ADMIN)
        assert canary.status_code == 422
        after = _score(service, sample_request)
        assert after["versions"] == before["versions"]
        assert after["candidates"] == before["candidates"]
    metrics = service.get("/metrics").text
    assert 'fusionrank_bundle_activation_failures_total{action="activate",surface="home"} 3.0' in metrics

    # The file-watch path: a rollout file naming the corrupt model is refused, model 2 keeps serving.
    path = policies / "home" / ROLLOUT_FILE
    declared = load_rollout(path)
    bad = declared.model_copy(update={"generation": declared.generation + 1,
                                      "active": declared.active.model_copy(update={"model_version": "4"})})
    path.write_text(dump_rollout(bad))
    registry = service.app.state.policy_registry  # type: ignore[attr-defined]
    changes = registry.sync_surface("home", {ROLLOUT_FILE})
    assert [c.outcome for c in changes] == ["refused"] and "golden" in (changes[0].error or "")
    assert _score(service, sample_request)["versions"] == before["versions"]
    assert any("refused" in p for p in service.get("/readyz").json()["problems"])
    # A restart on that file does not serve the surface at all (never a silent fallback to the pointers).
    restarted = client_factory(store=model_store, policies=policies, policy_watch_interval=0)
    assert restarted.get("/readyz").status_code == 503


def _users_body(sample: dict[str, Any], user: str) -> dict[str, Any]:
    body = copy.deepcopy(sample)
    body["candidates"] = body["candidates"][:5]
    body["context"]["user_id"] = user
    return body


def test_canary_share_is_within_tolerance_sticky_and_labelled(
    service: TestClient, sample_request: dict[str, Any]
) -> None:
    response = service.post("/admin/surfaces/home/canary", headers=ADMIN,
                            json={"model_version": "2", "calibration_version": "2", "fraction": 0.2})
    assert response.status_code == 200, response.text
    users = [f"user-{i}" for i in range(800)]
    arms: dict[str, str] = {}
    for user in users:
        answer = _score(service, _users_body(sample_request, user))
        arms[user] = answer["arm"]
        expect = ("2", "2") if answer["arm"] == "canary" else ("1", "1")
        assert (answer["versions"]["model_version"], answer["versions"]["calibration_version"]) == expect
    canary = sum(arm == "canary" for arm in arms.values())
    share = canary / len(users)
    # Binomial(800, 0.2): sd = 11.3 requests; 4 sd either side.
    assert abs(canary - 160) <= 46, share
    for user in users[:150]:  # sticky: the same user, the same arm, every time
        assert _score(service, _users_body(sample_request, user))["arm"] == arms[user]
    metrics = service.get("/metrics").text
    stable_line = ('fusionrank_served_requests_total{arm="stable",calibration_version="1",model_version="1",'
                   'policy_version="1",surface="home"}')
    canary_line = ('fusionrank_served_requests_total{arm="canary",calibration_version="2",model_version="2",'
                   'policy_version="1",surface="home"}')
    counted = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("fusionrank_served_requests_total{")}
    assert counted[canary_line] == canary + sum(arms[u] == "canary" for u in users[:150])
    assert counted[stable_line] == 950 - counted[canary_line]
    assert 'fusionrank_served_scoring_duration_seconds_count{arm="canary"' in metrics
    # The drift histogram carries the arm too: every candidate the canary scored, under arm="canary" (5 a request).
    registry = service.app.state.fusionrank.metrics.registry  # type: ignore[attr-defined]
    drift = {"model": "demo_ranker", "model_version": "2", "calibration_version": "2", "task": "click"}
    assert registry.get_sample_value("fusionrank_served_prediction_count", {**drift, "arm": "canary"}) == (
        5 * counted[canary_line])
    assert registry.get_sample_value("fusionrank_served_prediction_count", {**drift, "arm": "stable"}) == 0
    print(f"\ncanary: {canary}/{len(users)} users = {share:.3f} (target 0.2)")

    # A request without the sticky field stays on stable; pinning a policy version never goes to the canary.
    anonymous = _users_body(sample_request, "x")
    del anonymous["context"]["user_id"]
    assert _score(service, anonymous)["arm"] == "stable"

    promoted = service.post("/admin/surfaces/home/canary/promote", headers=ADMIN).json()
    assert promoted["action"] == "promote" and promoted["outcome"] == "applied"
    answer = _score(service, _users_body(sample_request, users[0]))
    assert "arm" not in answer and answer["versions"]["model_version"] == "2"
    assert service.post("/admin/surfaces/home/canary/promote", headers=ADMIN).status_code == 409

    # Abort: everyone back on stable at once.
    service.post("/admin/surfaces/home/canary", headers=ADMIN, json={"model_version": "1", "fraction": 0.5})
    assert service.post("/admin/surfaces/home/canary/abort", headers=ADMIN).json()["outcome"] == "applied"
    assert {_score(service, _users_body(sample_request, u))["versions"]["model_version"] for u in users[:40]} == {"2"}


def _latencies(service: TestClient, body: dict[str, Any], n: int) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        _score(service, body)
        times.append(time.perf_counter() - t0)
    return times


STALL_SECONDS = 0.2


def test_a_stalled_shadow_model_does_not_slow_the_live_answer(
    store: tuple[Path, Path], client_factory: Factory, sample_request: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model_store, policies = store
    service = client_factory(store=model_store, policies=policies, admin_tokens={"ops": ADMIN_TOKEN},
                             policy_watch_interval=0, shadow_model_queue_size=4)
    real_run = ModelRunner.run

    def stalled(self: ModelRunner, *args: Any) -> Any:
        if threading.current_thread().name == "fusionrank-shadow-model":
            time.sleep(STALL_SECONDS)  # the candidate takes ~20x longer than a live answer
        return real_run(self, *args)

    monkeypatch.setattr(ModelRunner, "run", stalled)
    body = _users_body(sample_request, "u")
    _latencies(service, body, 20)  # warm
    off: list[float] = []
    on: list[float] = []
    shadow = {"model_version": "2", "calibration_version": "2", "fraction": 1.0}
    for _ in range(4):  # interleaved blocks, so that load from elsewhere hits both alike
        off += _latencies(service, body, 50)
        response = service.post("/admin/surfaces/home/shadow-model", headers=ADMIN, json=shadow)
        assert response.status_code == 200, response.text
        on += _latencies(service, body, 50)
        assert service.post("/admin/surfaces/home/shadow-model", headers=ADMIN, json={"fraction": 0}).json()[
            "outcome"] == "applied"
    p99_off, p99_on = float(np.percentile(off, 99)), float(np.percentile(on, 99))
    metrics = service.get("/metrics").text
    print(f"\nshadow model stalled {STALL_SECONDS * 1e3:.0f} ms per request: live p99 {p99_off * 1e3:.1f} ms"
          f" with shadow off, {p99_on * 1e3:.1f} ms on (200 requests each, interleaved)")
    assert p99_on < STALL_SECONDS  # a live request never waited for the stalled candidate
    assert p99_on < 2 * p99_off + 0.020  # loose: the worker thread costs the live path next to nothing
    dropped = [line for line in metrics.splitlines() if line.startswith("fusionrank_shadow_model_dropped_total{")]
    assert dropped and float(dropped[0].rsplit(" ", 1)[1]) > 100  # the queue was full, requests went on
    scored = [line for line in metrics.splitlines() if line.startswith("fusionrank_shadow_model_scored_total{")]
    assert scored and float(scored[0].rsplit(" ", 1)[1]) >= 1
    assert "fusionrank_shadow_model_kendall_tau_count{" in metrics
    assert 'fusionrank_shadow_model_prediction_shift_count{calibration_version="2",model_version="2"' in metrics


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_swapped_out_sessions_are_freed_and_memory_returns_to_baseline(service: TestClient) -> None:
    state = service.app.state.fusionrank  # type: ignore[attr-defined]
    old_runners: list[weakref.ref[ModelRunner]] = []
    rss: list[float] = []
    for i in range(30):
        old_runners.append(weakref.ref(state.snapshot.route("home").binding(None).bundle.runner))
        assert _activate(service, model_version="2" if i % 2 == 0 else "1").status_code == 200
        gc.collect()
        rss.append(_rss_mb())
    in_use = {id(b.runner) for b in state.snapshot.bundles.values()}
    alive = {id(r) for ref in old_runners if (r := ref()) is not None}
    print(f"\nswaps: 30 between models 1 and 2; distinct sessions seen {len({id(r) for r in old_runners})},"
          f" still alive {len(alive)} (in use {len(in_use)}); RSS after swap 4 {rss[3]:.1f} MB,"
          f" after swap 30 {rss[-1]:.1f} MB")
    # Model 1 stays loaded (policy 2 of the surface names it) and is reused, never reloaded;
    # every model-2 session swapped out was freed: only sessions the snapshot still uses are alive.
    assert alive <= in_use
    assert len(state.snapshot.bundles) == 1  # the last swap went to model 1; model 2 is gone
    assert rss[-1] - rss[3] < 25.0  # 13 more sessions loaded and freed: no growth beyond allocator noise


def test_the_watcher_follows_a_pin_file_and_a_restart_serves_it(
    service: TestClient, store: tuple[Path, Path], sample_request: dict[str, Any], client_factory: Factory
) -> None:
    _, policies = store
    tmp = policies / "home" / ".bundle.tmp"
    tmp.write_text(json.dumps({"model_version": "2", "calibration_version": "1"}))
    tmp.rename(policies / "home" / "bundle")
    registry = service.app.state.policy_registry  # type: ignore[attr-defined]
    changes = registry.sync_surface("home", {"bundle"})
    assert [(c.action, c.outcome) for c in changes] == [("pin", "applied")]
    assert _score(service, sample_request)["versions"]["model_version"] == "2"
    restarted = client_factory(store=store[0], policies=policies, policy_watch_interval=0)
    versions = _score(restarted, sample_request)["versions"]
    assert (versions["model_version"], versions["calibration_version"]) == ("2", "1")
    # Policy 2 (servable by pinning it) still names model 1: both stay loaded, nothing else.
    assert sorted(restarted.app.state.fusionrank.snapshot.bundles) == ["demo_ranker/1", "demo_ranker/2"]  # type: ignore[attr-defined]
    (policies / "home" / "bundle").unlink()
    registry.sync_surface("home", {"bundle"})
    assert _score(service, sample_request)["versions"]["model_version"] == "1"
