"""The registry's one history: both rollback endpoints step back through the same served triples."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.artifacts.rollout import ROLLOUT_FILE, load_rollout
from app.control.pins import read_pin
from tests.conftest import ADMIN, ADMIN_TOKEN, write_policy
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


def test_policy_rollback_steps_back_over_a_triple_activation(
    service: tuple[TestClient, Path], sample_request: dict[str, Any]
) -> None:
    client, policies = service
    assert client.post("/admin/policies/home/activate", json={"version": "2"}, headers=ADMIN).status_code == 200
    assert client.post("/admin/surfaces/home/activate", json={"model_version": "2", "calibration_version": "2"},
                       headers=ADMIN).status_code == 200
    assert _served(client, sample_request) == ("2", "2", "2")
    listing = client.get("/admin/policies", headers=ADMIN).json()["surfaces"]["home"]
    assert listing["previous"] == "2"  # the triple before: policy 2 on its own model and calibration
    # The policy API's rollback undoes the last change of the triple, whichever API made it.
    rolled = client.post("/admin/policies/home/rollback", headers=ADMIN).json()
    assert (rolled["action"], rolled["outcome"]) == ("rollback", "applied")
    assert _served(client, sample_request) == ("1", "1", "2")
    assert read_pin(policies / "home") is None
    # ...and the triple API's rollback continues through the same history.
    rolled = client.post("/admin/surfaces/home/rollback", headers=ADMIN).json()
    assert (rolled["action"], rolled["outcome"]) == ("rollback", "applied")
    assert _served(client, sample_request) == ("1", "1", "1")
    assert client.post("/admin/policies/home/rollback", headers=ADMIN).status_code == 409
    assert client.post("/admin/surfaces/home/rollback", headers=ADMIN).status_code == 409


def test_a_change_the_watcher_applies_can_be_rolled_back(
    service: tuple[TestClient, Path], sample_request: dict[str, Any]
) -> None:
    client, policies = service
    write_policy(policies, "3", lambda p: p["utility"][0].update(weight=2.0))
    (policies / "home" / "active").write_text("3\n")
    client.app.state.policy_watcher.poll_once()  # type: ignore[attr-defined]
    assert _served(client, sample_request)[2] == "3"
    assert client.post("/admin/surfaces/home/rollback", headers=ADMIN).status_code == 200
    assert _served(client, sample_request)[2] == "1"
    declared = load_rollout(policies / "home" / ROLLOUT_FILE)  # written for the other replicas
    assert (declared.generation, declared.active.policy_version) == (1, "1")
