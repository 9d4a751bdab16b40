"""`GET /v1/surfaces[/{surface}]`: public discovery of what each surface needs, cached per snapshot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from app.main import create_app
from tests.conftest import make_settings

TOKEN = "t" * 32


def test_a_surface_lists_its_arm_tasks_features_attributes_and_limits(client: TestClient) -> None:
    response = client.get("/v1/surfaces/home")
    assert response.status_code == 200
    doc = response.json()
    assert doc["surface"] == "home" and doc["policy_version"] == "1"
    assert doc["servable_policy_versions"] == ["1", "2", "3"]
    assert doc["arms"] == [{"arm": "stable", "share": 1.0, "key": None, "versions": {
        "model": "demo_ranker", "model_version": "1", "calibration_version": "1", "policy_version": "1"}}]
    assert [t["name"] for t in doc["tasks"]] == ["click", "purchase", "hide", "report"]
    required = {f["name"] for f in doc["features"]["required"]}
    assert required == {"user_activity", "user_age_days"}
    optional = {f["name"]: f for f in doc["features"]["optional"]}
    assert optional["item_price"] == {"name": "item_price", "type": "number", "default": 0.0, "vocabulary_size": None}
    assert optional["item_category"]["type"] == "string" and optional["item_category"]["vocabulary_size"] == 20
    assert "vocabulary" not in optional["item_category"]  # sizes, never the vocabularies
    attributes = {a["name"]: a for a in doc["attributes"]}
    assert attributes["margin"] == {"name": "margin", "type": "number", "used_by": ["utility:purchase_margin"]}
    assert attributes["eligible"]["used_by"] == ["guardrail:not_eligible"]
    assert doc["context_attributes"] == [{"name": "user_segment", "used_by": ["override:new_users_safer"]}]
    limits = doc["limits"]
    assert limits["max_candidates"] == 5000 and limits["deadline_header"] == "x-request-deadline-ms"
    assert limits["content_types"] == ["application/json", "application/vnd.apache.arrow.stream"]
    assert doc["rollout"]["active"] == "1" and doc["rollout"]["shadow"] is None
    assert "refused" not in doc["rollout"] and "on_disk" not in doc["rollout"]  # admin-only details


def test_the_list_holds_every_served_surface_and_needs_no_token(client_factory: Any) -> None:
    client = client_factory(admin_token=TOKEN)
    listing = client.get("/v1/surfaces")
    assert listing.status_code == 200
    body = listing.json()
    assert [s["surface"] for s in body["surfaces"]] == ["home"] and body["unserved"] == []
    assert body["surfaces"][0] == client.get("/v1/surfaces/home").json()


def test_unknown_surface_is_a_404_naming_the_served_ones(client: TestClient) -> None:
    response = client.get("/v1/surfaces/nope")
    assert response.status_code == 404
    assert "served surfaces: ['home']" in response.json()["error"]["message"]


def test_etag_and_cache_control_and_304(client: TestClient) -> None:
    first = client.get("/v1/surfaces/home")
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "public, max-age=5"
    again = client.get("/v1/surfaces/home", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert client.get("/v1/surfaces/home", headers={"If-None-Match": '"other"'}).status_code == 200
    assert client.get("/v1/surfaces", headers={"If-None-Match": etag}).status_code == 200  # its own ETag


def test_rendered_once_per_snapshot_and_again_after_a_change(tmp_path: Path, store_copy: tuple[Path, Path]) -> None:
    store, policies = store_copy
    with TestClient(create_app(make_settings(store, policies, admin_token=TOKEN, policy_watch_interval=0))) as client:
        before = client.get("/v1/surfaces/home")
        rendered = client.app.state.discovery  # type: ignore[attr-defined]
        client.get("/v1/surfaces")
        client.get("/v1/surfaces/home")
        assert client.app.state.discovery is rendered  # type: ignore[attr-defined]  # not per request
        auth = {"Authorization": f"Bearer {TOKEN}"}
        change = client.post("/admin/surfaces/home/canary", json={"policy_version": "2", "fraction": 0.25},
                             headers=auth)
        assert change.status_code == 200, change.text
        after = client.get("/v1/surfaces/home", headers={"If-None-Match": before.headers["etag"]})
        assert after.status_code == 200 and after.headers["etag"] != before.headers["etag"]
        arms = after.json()["arms"]
        assert [(a["arm"], a["share"], a["key"]) for a in arms] == [
            ("stable", 0.75, None), ("canary", 0.25, "context.user_id")]
        assert arms[1]["versions"]["policy_version"] == "2"
        activated = client.post("/admin/policies/home/activate", json={"version": "2"}, headers=auth)
        assert activated.status_code == 200, activated.text
        assert client.get("/v1/surfaces/home").json()["rollout"]["active"] == "2"


def test_discovery_is_in_the_openapi_description(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/v1/surfaces" in paths and "/v1/surfaces/{surface}" in paths
    assert "/explain" not in paths
