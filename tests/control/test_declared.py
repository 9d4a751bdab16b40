"""The declared rollout file: written by admin changes (compare-and-swap), applied whole by the watcher."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.artifacts.rollout import ROLLOUT_FILE, RolloutState, dump_rollout, load_rollout
from app.control.declared import locked
from app.errors import ArtifactError
from app.serving.routing import routes_to_canary
from tests.conftest import ADMIN, ADMIN_TOKEN
from tests.lifecycle_helpers import build_store


@pytest.fixture
def service(tmp_path: Path, client_factory: Callable[..., TestClient]) -> tuple[TestClient, Path]:
    model_store, policies = build_store(tmp_path)
    client = client_factory(store=model_store, policies=policies, admin_tokens={"ops": ADMIN_TOKEN},
                            policy_watch_interval=3600)
    return client, policies


def _served(client: TestClient, sample: dict[str, Any]) -> tuple[str, str, str]:
    v = client.post("/v1/score", json=sample).json()["versions"]
    return v["model_version"], v["calibration_version"], v["policy_version"]


def _anonymous(sample: dict[str, Any]) -> dict[str, Any]:
    """The sample request without a user id (the sticky key): always the stable arm."""
    return {**sample, "context": {k: v for k, v in sample["context"].items() if k != "user_id"}}


def _user(sample: dict[str, Any], user: str) -> dict[str, Any]:
    return {**sample, "context": {**sample["context"], "user_id": user}}


def _poll(client: TestClient) -> None:
    client.app.state.policy_watcher.poll_once()  # type: ignore[attr-defined]


def test_a_stale_writer_gets_409_naming_the_current_generation_and_writes_nothing(
    service: tuple[TestClient, Path], sample_request: dict[str, Any]
) -> None:
    client, policies = service
    first = client.post("/admin/policies/home/activate", json={"version": "2"}, headers=ADMIN,
                        params={"expected_generation": 0, "reason": "try policy 2"})
    assert first.status_code == 200 and first.json()["generation"] == 1
    path = policies / "home" / ROLLOUT_FILE
    before = path.read_bytes()
    stale = client.post("/admin/surfaces/home/activate", json={"model_version": "2"}, headers=ADMIN,
                        params={"expected_generation": 0})
    assert stale.status_code == 409
    assert "generation 1, not 0" in stale.json()["error"]["message"]
    assert path.read_bytes() == before and _served(client, sample_request) == ("1", "1", "2")
    declared = load_rollout(path)
    assert (declared.changed_by, declared.reason) == ("ops", "try policy 2")
    got = client.get("/admin/rollouts/home", headers=ADMIN).json()
    assert got["serving_generation"] == 1 and got["declared"]["active"]["policy_version"] == "2"


def test_a_refused_change_writes_nothing(service: tuple[TestClient, Path]) -> None:
    client, policies = service
    response = client.post("/admin/surfaces/home/activate", json={"model_version": "9"}, headers=ADMIN)
    assert response.status_code == 404
    assert not (policies / "home" / ROLLOUT_FILE).exists()
    canary = client.post("/admin/surfaces/home/canary", json={"policy_version": "7", "fraction": 0.1},
                         headers=ADMIN)
    assert canary.status_code == 404 and not (policies / "home" / ROLLOUT_FILE).exists()


def test_the_watcher_applies_a_new_file_whole_and_refuses_a_bad_one(
    service: tuple[TestClient, Path], sample_request: dict[str, Any]
) -> None:
    client, policies = service
    path = policies / "home" / ROLLOUT_FILE
    # Another replica's write: the model, the calibration, a canary and a shadow policy at once.
    state = RolloutState.model_validate({
        "surface": "home", "generation": 4, "changed_by": "bob", "reason": "refit",
        "active": {"model": "demo_ranker", "model_version": "2", "calibration_version": "2", "policy_version": "1"},
        "canary": {"triple": {"model": "demo_ranker", "model_version": "1", "calibration_version": "2",
                              "policy_version": "2"}, "share": 0.5, "salt": 4},
        "shadow_policy": "2",
    })
    path.write_text(dump_rollout(state))
    _poll(client)
    assert _served(client, _anonymous(sample_request)) == ("2", "2", "1")  # no user id: stable
    arms = {client.post("/v1/score", json=_user(sample_request, f"u{i}")).json()["arm"]
            for i in range(20)}
    assert arms == {"stable", "canary"}
    assert 'fusionrank_rollout_generation{surface="home"} 4.0' in client.get("/metrics").text

    # A bad file (unknown key) and an unservable one (no such model) are refused: generation 4 keeps serving.
    path.write_text(dump_rollout(state).replace("reason: refit", "reason: refit\nowner: me"))
    _poll(client)
    problems = client.get("/readyz").json()["problems"]
    assert any("rollout.yaml: refused" in p and "owner" in p for p in problems), problems
    bad = state.model_copy(update={"generation": 5, "active": state.active.model_copy(update={"model_version": "9"})})
    path.write_text(dump_rollout(bad))
    _poll(client)
    assert _served(client, _anonymous(sample_request)) == ("2", "2", "1")
    metrics = client.get("/metrics").text
    assert 'fusionrank_rollout_refusals_total{surface="home"} 2.0' in metrics
    assert 'fusionrank_rollout_generation{surface="home"} 4.0' in metrics
    # Repaired: served, and the problem is gone.
    path.write_text(dump_rollout(state.model_copy(update={"generation": 6, "canary": None})))
    _poll(client)
    assert not any("rollout.yaml" in p for p in client.get("/readyz").json()["problems"])
    assert "arm" not in client.post("/v1/score", json=sample_request).json()


def test_once_declared_the_pointer_files_are_ignored(
    service: tuple[TestClient, Path], sample_request: dict[str, Any]
) -> None:
    client, policies = service
    assert client.post("/admin/policies/home/activate", json={"version": "2"}, headers=ADMIN).status_code == 200
    (policies / "home" / "active").write_text("1\n")
    _poll(client)
    assert _served(client, sample_request) == ("1", "1", "2")


def test_a_restart_serves_the_declared_state(
    service: tuple[TestClient, Path], client_factory: Callable[..., TestClient], sample_request: dict[str, Any]
) -> None:
    client, policies = service
    assert client.post("/admin/surfaces/home/activate", json={"model_version": "2", "calibration_version": "2"},
                       headers=ADMIN).status_code == 200
    restarted = client_factory(store=policies.parent / "model_store", policies=policies, policy_watch_interval=0)
    assert _served(restarted, sample_request) == ("2", "2", "1")


def test_the_lock_serialises_writers(tmp_path: Path) -> None:
    order: list[str] = []
    with locked(tmp_path):
        thread = threading.Thread(target=lambda: (locked(tmp_path).__enter__(), order.append("second")))
        thread.start()
        time.sleep(0.1)
        order.append("first")
    thread.join(5)
    assert order == ["first", "second"]


def test_the_file_format_refuses_unknown_keys_and_bad_shares(tmp_path: Path) -> None:
    path = tmp_path / ROLLOUT_FILE
    triple = "{model: m, model_version: '1', calibration_version: '1', policy_version: '1'}"
    path.write_text(f"surface: home\ngeneration: 1\nactive: {triple}\ncanary: {{triple: {triple}, share: 1.5}}\n")
    with pytest.raises(ArtifactError, match=r"canary\.share"):
        load_rollout(path)


def test_the_arm_is_a_pure_function_of_surface_key_and_salt() -> None:
    users = [f"user-{i}" for i in range(4000)]
    first = [routes_to_canary("home", u, 0.2, 3) for u in users]
    assert first == [routes_to_canary("home", u, 0.2, 3) for u in users]  # same on every replica/worker
    assert abs(sum(first) / len(users) - 0.2) < 0.02
    wider = [routes_to_canary("home", u, 0.3, 3) for u in users]
    assert all(w for f, w in zip(first, wider, strict=True) if f)  # a larger share only adds users
    other = [routes_to_canary("home", u, 0.2, 4) for u in users]
    assert other != first  # a new canary (salt) draws a new split
