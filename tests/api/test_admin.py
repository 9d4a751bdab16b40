"""The admin API of the policy registry: auth, activate, rollback, shadow, audit and metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.artifacts.rollout import ROLLOUT_FILE, load_rollout
from app.control.audit import AUDIT_FIELDS
from tests.conftest import ADMIN, ADMIN_TOKEN, write_policy

BOB_TOKEN = "bob-token-0123456789abcdefgh"
ROUTES = [
    ("GET", "/admin/policies", None),
    ("POST", "/admin/policies/home/activate", {"version": "2"}),
    ("POST", "/admin/policies/home/rollback", None),
    ("POST", "/admin/policies/home/shadow", {"version": "2"}),
    ("POST", "/admin/policies/home/validate", {"version": "2"}),
]


@pytest.fixture
def admin_client(
    client_factory: Callable[..., TestClient], store_copy: tuple[Path, Path]
) -> tuple[TestClient, Path]:
    store, policies = store_copy
    client = client_factory(store=store, policies=policies, policy_watch_interval=0,
                            admin_tokens={"alice": ADMIN_TOKEN, "bob": BOB_TOKEN})
    return client, policies


def _served(client: TestClient, sample_request: dict[str, Any]) -> str:
    response = client.post("/v1/score", json=sample_request)
    assert response.status_code == 200, response.text
    version: str = response.json()["versions"]["policy_version"]
    return version


def _audit(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [{k: r.__dict__[k] for k in AUDIT_FIELDS} for r in caplog.records if r.name == "fusionrank.audit"]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_admin_routes_are_404_without_a_configured_token(
    client_factory: Callable[..., TestClient], store_copy: tuple[Path, Path], method: str, path: str, body: Any
) -> None:
    client = client_factory(store=store_copy[0], policies=store_copy[1], policy_watch_interval=0)
    response = client.request(method, path, json=body, headers=ADMIN)
    assert response.status_code == 404
    assert "disabled" in response.json()["error"]["message"]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_missing_or_wrong_token_is_401_and_counted(
    admin_client: tuple[TestClient, Path], method: str, path: str, body: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client, policies = admin_client
    caplog.set_level(logging.DEBUG)
    for headers in ({}, {"authorization": "Basic abc"}, {"authorization": f"Bearer {ADMIN_TOKEN}x"}):
        response = client.request(method, path, json=body, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert ADMIN_TOKEN not in response.text
    # a wrong token with a broken body is still a 401: auth runs first
    assert client.request(method, path, content=b"{", headers={"authorization": "Bearer nope"}).status_code == 401
    assert (policies / "home" / "active").read_text().strip() == "1"
    metrics = client.get("/metrics").text
    assert 'fusionrank_admin_auth_failures_total{reason="missing"} 2.0' in metrics
    assert 'fusionrank_admin_auth_failures_total{reason="invalid"} 2.0' in metrics
    assert all(ADMIN_TOKEN not in r.getMessage() for r in caplog.records)


def test_listing_shows_surfaces_versions_active_previous_and_shadow(admin_client: tuple[TestClient, Path]) -> None:
    client, _ = admin_client
    body = client.get("/admin/policies", headers=ADMIN).json()
    home = body["surfaces"]["home"]
    assert home["active"] == "1" and home["previous"] is None and home["shadow"] is None
    assert home["servable"] == ["1", "2", "3"] and home["on_disk"] == ["1", "2", "3"]
    assert home["serving"]["policy_version"] == "1"


def test_activate_then_rollback_switches_what_is_served_and_audits_who(
    admin_client: tuple[TestClient, Path], sample_request: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    client, policies = admin_client
    caplog.set_level(logging.INFO, logger="fusionrank.audit")
    bundle_before = client.app.state.fusionrank.snapshot.bundles["demo_ranker/1"]  # type: ignore[attr-defined]

    response = client.post("/admin/policies/home/activate", json={"version": "2"}, headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json() | {"at": None} == {
        "event": "policy_change", "at": None, "who": "alice", "source": "api", "surface": "home",
        "action": "activate", "from": "1", "to": "2", "outcome": "applied", "persisted": True, "error": None,
        "generation": 1,
    }
    assert _served(client, sample_request) == "2"
    declared = load_rollout(policies / "home" / ROLLOUT_FILE)  # persisted for restarts and replicas
    assert (declared.generation, declared.active.policy_version, declared.changed_by) == (1, "2", "alice")
    assert [t.policy_version for t in declared.previous] == ["1"]
    snapshot = client.app.state.fusionrank.snapshot  # type: ignore[attr-defined]
    assert snapshot.bundles["demo_ranker/1"] is bundle_before  # no ONNX reload for a policy flip
    assert snapshot.route("home").binding("2").bundle.runner is bundle_before.runner
    assert client.get("/admin/policies", headers=ADMIN).json()["surfaces"]["home"]["previous"] == "1"

    response = client.post("/admin/policies/home/rollback", headers={"authorization": f"Bearer {BOB_TOKEN}"})
    assert response.status_code == 200 and response.json()["to"] == "1" and response.json()["who"] == "bob"
    assert _served(client, sample_request) == "1"
    declared = load_rollout(policies / "home" / ROLLOUT_FILE)
    assert (declared.generation, declared.active.policy_version, declared.previous) == (2, "1", [])

    response = client.post("/admin/policies/home/rollback", headers=ADMIN)  # history is used up
    assert response.status_code == 409 and response.json()["error"]["code"] == "conflict"

    lines = _audit(caplog)
    assert [(a["who"], a["action"], a["from"], a["to"], a["outcome"]) for a in lines] == [
        ("alice", "activate", "1", "2", "applied"), ("bob", "rollback", "2", "1", "applied"),
        ("alice", "rollback", "1", None, "refused"),
    ]
    assert all(a["at"].endswith("+00:00") for a in lines)
    metrics = client.get("/metrics").text
    assert 'fusionrank_policy_activations_total{source="api",surface="home"} 2.0' in metrics
    assert 'fusionrank_policy_activation_failures_total{source="api",surface="home"} 1.0' in metrics
    assert 'fusionrank_policy_active_info{surface="home",version="1"} 1.0' in metrics
    assert 'fusionrank_policy_active_info{surface="home",version="2"}' not in metrics
    # admin routes are labelled by their template (bounded), not counted as "other"
    assert 'fusionrank_http_requests_total{route="/admin/policies/{surface}/activate",status="200"} 1.0' in metrics


def test_a_broken_version_is_refused_with_422_and_the_old_one_stays(
    admin_client: tuple[TestClient, Path], sample_request: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    client, policies = admin_client
    caplog.set_level(logging.INFO, logger="fusionrank.audit")
    write_policy(policies, "3", lambda p: p["utility"][2].update(weight=1.0))  # positive weight on `hide`
    write_policy(policies, "4", lambda p: p["attributes"].update(eligible="string"))  # dry run fails
    for version, field in (("3", "utility[2].weight"), ("4", "attributes.eligible")):
        response = client.post("/admin/policies/home/activate", json={"version": version}, headers=ADMIN)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "policy_error" and f"{version}.yaml" in error["message"]
        assert error["details"][0]["field"] == field and error["details"][0]["fix"]
        assert _served(client, sample_request) == "1"
    assert (policies / "home" / "active").read_text().strip() == "1"
    for version, status in (("9", 404), ("../1", 422)):
        response = client.post("/admin/policies/home/activate", json={"version": version}, headers=ADMIN)
        assert response.status_code == status
    assert client.post("/admin/policies/search/activate", json={"version": "1"}, headers=ADMIN).status_code == 404
    assert [a["outcome"] for a in _audit(caplog)] == ["refused"] * 4
    assert 'fusionrank_policy_activation_failures_total{source="api",surface="home"} 4.0' in client.get(
        "/metrics").text


def test_reactivating_the_served_version_changes_nothing_unless_its_file_changed(
    admin_client: tuple[TestClient, Path], sample_request: dict[str, Any]
) -> None:
    client, policies = admin_client
    state = client.app.state.fusionrank  # type: ignore[attr-defined]
    snapshot = state.snapshot
    response = client.post("/admin/policies/home/activate", json={"version": "1"}, headers=ADMIN)
    assert response.json()["outcome"] == "unchanged" and state.snapshot is snapshot
    write_policy(policies, "1", lambda p: p["utility"][0].update(weight=1.25))  # edited in place
    response = client.post("/admin/policies/home/activate", json={"version": "1"}, headers=ADMIN)
    assert response.json()["outcome"] == "applied" and state.snapshot is not snapshot
    body = client.post("/v1/score", json=dict(sample_request, options={"debug": True})).json()
    assert body["candidates"][0]["debug"]["terms"][0]["weight"] == 1.25
    assert client.get("/admin/policies", headers=ADMIN).json()["surfaces"]["home"]["previous"] is None


def test_validate_route_checks_without_activating(
    admin_client: tuple[TestClient, Path], sample_request: dict[str, Any]
) -> None:
    client, policies = admin_client
    response = client.post("/admin/policies/home/validate", json={"version": "2"}, headers=ADMIN)
    assert response.status_code == 200
    assert response.json()["valid"] is True and response.json()["golden_candidates"] == 40
    assert _served(client, sample_request) == "1"
    write_policy(policies, "5", lambda p: p["guardrails"][0].update(above=0.0))  # filters the whole batch
    response = client.post("/admin/policies/home/validate", json={"version": "5"}, headers=ADMIN)
    assert response.status_code == 422 and "every one of the 40" in response.json()["error"]["message"]


def test_without_persistence_the_pointer_file_is_left_alone(
    client_factory: Callable[..., TestClient], store_copy: tuple[Path, Path], sample_request: dict[str, Any]
) -> None:
    store, policies = store_copy
    client = client_factory(store=store, policies=policies, policy_watch_interval=0, persist_pointers=False,
                            admin_token=ADMIN_TOKEN)
    response = client.post("/admin/policies/home/activate", json={"version": "2"}, headers=ADMIN)
    assert response.json()["persisted"] is False and response.json()["who"] == "admin"
    assert _served(client, sample_request) == "2"
    assert (policies / "home" / "active").read_text().strip() == "1"


def test_shadow_is_ranked_alongside_without_changing_the_answer(
    admin_client: tuple[TestClient, Path], sample_request: dict[str, Any]
) -> None:
    client, policies = admin_client
    sample_request["options"] = {"debug": True}
    before = client.post("/v1/score", json=sample_request).json()
    response = client.post("/admin/policies/home/shadow", json={"version": "2"}, headers=ADMIN)
    assert response.status_code == 200 and response.json()["action"] == "shadow"
    assert load_rollout(policies / "home" / ROLLOUT_FILE).shadow_policy == "2"
    after = client.post("/v1/score", json=sample_request).json()
    shadow = after.pop("shadow")
    for body in (before, after):
        body.pop("timings_ms")
    assert after == before  # the answer is the active policy's, untouched
    pinned = dict(sample_request, policy_version="2")
    expected = [c["id"] for c in client.post("/v1/score", json=pinned).json()["candidates"]]
    assert "shadow" not in client.post("/v1/score", json=pinned).json()  # pinned requests are not shadowed
    assert shadow["policy_version"] == "2" and shadow["ranked_ids"] == expected
    served = [c["id"] for c in after["candidates"]]
    assert shadow["topk_overlap"] == len(set(served) & set(expected)) / len(served)
    shift = [abs(i - expected.index(c)) for i, c in enumerate(served) if c in expected]
    assert shadow["mean_rank_shift"] == pytest.approx(sum(shift) / len(shift))
    assert shadow["mean_rank_shift"] > 0  # version 2 does reorder the golden batch
    metrics = client.get("/metrics").text
    assert 'fusionrank_shadow_requests_total{shadow_version="2",surface="home"} 1.0' in metrics
    assert 'fusionrank_shadow_topk_overlap_count{shadow_version="2",surface="home"} 1.0' in metrics
    assert 'fusionrank_policy_shadow_info{surface="home",version="2"} 1.0' in metrics

    response = client.post("/admin/policies/home/shadow", json={"version": None}, headers=ADMIN)
    assert response.json()["from"] == "2" and response.json()["to"] is None
    assert not (policies / "home" / "shadow").exists()
    assert "shadow" not in client.post("/v1/score", json=sample_request).json()


def test_a_shadow_that_cannot_rank_a_request_never_fails_it(
    admin_client: tuple[TestClient, Path], sample_request: dict[str, Any]
) -> None:
    client, policies = admin_client
    write_policy(policies, "6", lambda p: p["attributes"].update(tier="string"))
    assert client.post("/admin/policies/home/shadow", json={"version": "6"}, headers=ADMIN).status_code == 200
    sample_request["candidates"][0]["attributes"]["tier"] = 3  # the active policy does not read `tier`
    sample_request["options"] = {"debug": True}
    response = client.post("/v1/score", json=sample_request)
    assert response.status_code == 200
    assert "tier" in response.json()["shadow"]["error"]
    assert 'fusionrank_shadow_errors_total{shadow_version="6",surface="home"} 1.0' in client.get("/metrics").text
