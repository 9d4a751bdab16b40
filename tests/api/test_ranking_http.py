"""A policy's `ranking` block over HTTP: request history at the edge, its effect and the debug output."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.artifacts.policy_ranking import MAX_SEEN_IDS
from app.offline.demo_ranking import demo_policy_v2
from tests.conftest import write_policy


@pytest.fixture(scope="module")
def ranked_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The shipped bundle with version 9: the demo's version 2 plus request history."""
    import shutil

    from app.main import create_app
    from tests.conftest import MODEL_STORE, POLICIES, make_settings

    policies = tmp_path_factory.mktemp("ranked") / "policies"
    shutil.copytree(POLICIES, policies)

    def edit(data: dict[str, Any]) -> None:
        data.update(demo_policy_v2(data), version="9")
        data["ranking"]["history"] = {"previously_seen": True,
                                      "fatigue": {"attribute": "creator_id", "decay": 0.5, "floor": 0.1}}

    write_policy(policies, "9", edit)
    write_policy(policies, "10", lambda data: data.update(ranking={
        "normalize": {"click": "rank", "purchase_margin": "zscore"},
        "mmr": {"name": "creator_mmr", "attribute": "creator_id", "lambda": 0.5},
        "max_share": [{"name": "sponsored_share", "attribute": "sponsored", "equals": True, "share": 0.05}],
    }))
    with TestClient(create_app(make_settings(MODEL_STORE, policies))) as client:
        yield client


def _body(sample: dict[str, Any], **context: Any) -> dict[str, Any]:
    for i, candidate in enumerate(sample["candidates"]):
        candidate["attributes"]["is_new"] = i % 9 == 0
    sample["policy_version"] = "9"
    sample["options"] = {"debug": True}
    sample["context"].update(context)
    return sample


def test_history_filters_seen_ids_and_fatigue_decays_a_creator(
    ranked_client: TestClient, sample_request: dict[str, Any], sample_request_body: dict[str, Any]
) -> None:
    plain = ranked_client.post("/v1/score", json=_body(sample_request)).json()
    first, second = plain["candidates"][0], plain["candidates"][1]
    creator = next(c["attributes"]["creator_id"] for c in sample_request_body["candidates"] if c["id"] == first["id"])
    body = _body(sample_request, seen_ids=[second["id"]], negative_feedback={creator: 1})
    got = ranked_client.post("/v1/score", json=body).json()
    assert {"id": second["id"], "stage": "guardrail", "rule": "previously_seen"}.items() <= next(
        f for f in got["filtered"] if f["id"] == second["id"]).items()
    assert second["id"] not in [c["id"] for c in got["candidates"]]
    fatigued = next(c for c in got["candidates"] if c["id"] == first["id"])
    assert fatigued["debug"]["ranking"]["fatigue"] == pytest.approx(0.5)
    assert fatigued["debug"]["ranking"]["score"] == pytest.approx(0.5 * first["debug"]["ranking"]["score"])


def test_debug_shows_decay_minimums_and_shortfalls(ranked_client: TestClient, sample_request: dict[str, Any]) -> None:
    got = ranked_client.post("/v1/score", json=_body(sample_request)).json()
    rows = [c["debug"]["ranking"] for c in got["candidates"]]
    assert all("creator_decay" in r["decay"] for r in rows)
    assert any(r["decay"]["creator_decay"] < 1.0 for r in rows)  # a creator's second candidate
    fresh = [c for c in got["candidates"][:10] if c["id"] in {s["id"] for s in sample_request["candidates"]
                                                               if s["attributes"]["is_new"]}]
    assert len(fresh) >= 4 or got["slate_shortfalls"]
    for candidate in sample_request["candidates"]:
        candidate["attributes"]["is_new"] = False
    sample_request["options"] = {"debug": True}
    none_fresh = ranked_client.post("/v1/score", json=sample_request).json()
    assert none_fresh["slate_shortfalls"] == [{"rule": "fresh_items", "wanted": 4, "got": 0, "within": 10}]
    assert len(none_fresh["candidates"]) == 20  # degrades: the slate is still served
    metrics = ranked_client.get("/metrics").text
    assert 'fusionrank_slate_minimum_shortfalls_total{rule="fresh_items",surface="home"}' in metrics


@pytest.mark.parametrize(
    ("context", "field"),
    [
        ({"seen_ids": ["x"] * (MAX_SEEN_IDS + 1)}, "context.seen_ids"),
        ({"seen_ids": [""]}, "context.seen_ids[0]"),
        ({"negative_feedback": {"c": -1}}, "context.negative_feedback.c"),
        ({"negative_feedback": {"c": 1001}}, "context.negative_feedback.c"),
        ({"negative_feedback": {"c": "many"}}, "context.negative_feedback.c"),
    ],
)
def test_history_is_bounded_at_the_edge(
    ranked_client: TestClient, sample_request: dict[str, Any], context: dict[str, Any], field: str
) -> None:
    sample_request["context"].update(context)
    response = ranked_client.post("/v1/score", json=sample_request)
    assert response.status_code == 422
    assert field in response.text


def test_a_policy_without_ranking_answers_as_before(
    client_factory: Callable[..., TestClient], sample_request: dict[str, Any], tmp_path: Path
) -> None:
    client = client_factory()
    before = client.post("/v1/score", json=sample_request).json()
    sample_request["context"].update(seen_ids=[before["candidates"][0]["id"]], negative_feedback={"x": 2})
    after = client.post("/v1/score", json=sample_request).json()  # version 1 has no history: ignored
    assert [c["id"] for c in after["candidates"]] == [c["id"] for c in before["candidates"]]


def test_debug_shows_normalised_terms_mmr_and_share_drops(
    ranked_client: TestClient, sample_request: dict[str, Any]
) -> None:
    sample_request.update(policy_version="10", options={"debug": True})
    got = ranked_client.post("/v1/score", json=sample_request).json()
    terms = {t["name"]: t for t in got["candidates"][0]["debug"]["terms"]}
    assert 0.0 <= terms["click"]["normalized"] <= 1.0 and "normalized" not in terms["hide_penalty"]
    assert terms["click"]["contribution"] == terms["click"]["normalized"] * terms["click"]["weight"]
    assert all("mmr_penalty" in c["debug"]["ranking"] for c in got["candidates"])
    sponsored = {c["id"] for c in sample_request["candidates"] if c["attributes"]["sponsored"]}
    assert sum(c["id"] in sponsored for c in got["candidates"]) <= 1  # floor(0.05 x 20)
    assert any(f["rule"] == "sponsored_share" for f in got["filtered"]) or len(sponsored) <= 1
