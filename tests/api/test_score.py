"""`POST /v1/score` through the real app (lifespan included) on the shipped demo bundle."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient

from app.serving.calibration import sigmoid


def test_happy_path_ranks_with_versions(client: TestClient, sample_request: dict[str, Any]) -> None:
    response = client.post("/v1/score", json=sample_request)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["versions"] == {"model": "demo_ranker", "model_version": "1", "calibration_version": "1",
                                "policy_version": "1"}
    ranked = body["candidates"]
    assert 0 < len(ranked) <= 20  # policy top_k
    utilities = [c["utility"] for c in ranked]
    assert utilities == sorted(utilities, reverse=True)
    assert [c["rank"] for c in ranked] == list(range(1, len(ranked) + 1))
    assert set(ranked[0]["predictions"]) == {"click", "purchase", "hide", "report"}
    assert all(0 < p < 1 for c in ranked for p in c["predictions"].values())
    assert "debug" not in ranked[0]


def test_debug_terms_sum_to_utility_and_recompute(client: TestClient, sample_request: dict[str, Any]) -> None:
    sample_request["options"] = {"debug": True, "return_filtered": True}
    body = client.post("/v1/score", json=sample_request).json()
    by_id = {c["id"]: c for c in sample_request["candidates"]}
    for candidate in body["candidates"]:
        debug = candidate["debug"]
        terms = debug["terms"]
        assert sum(t["contribution"] for t in terms) == pytest.approx(candidate["utility"], abs=1e-12)
        for term in terms:
            factor = 1.0
            if "attribute" in term:
                factor = by_id[candidate["id"]]["attributes"].get(term["attribute"], 0.0)
                assert term["attribute_value"] == factor
            assert term["contribution"] == pytest.approx(term["weight"] * term["prediction"] * factor, rel=1e-12)
            assert term["prediction"] == candidate["predictions"][term["task"]]
        # raw predictions are the sigmoid of the logits; calibrated ones differ from raw
        for task, z in debug["logits"].items():
            assert debug["raw_predictions"][task] == pytest.approx(float(sigmoid(np.array(z))), rel=1e-12)
        assert debug["raw_predictions"] != candidate["predictions"]
        assert not any(debug["guardrails"].values())
    assert body["timings_ms"].keys() == {"features", "inference", "calibration", "utility"}
    assert body["overrides"] in ([], ["new_users_safer"])


def test_guardrail_removes_with_reason(client: TestClient, sample_request: dict[str, Any]) -> None:
    ineligible = [i for i, c in enumerate(sample_request["candidates"]) if not c["attributes"]["eligible"]]
    assert len(ineligible) >= 3  # the sample request is built that way
    sample_request["options"] = {"return_filtered": True, "debug": True}
    body = client.post("/v1/score", json=sample_request).json()
    removed = {f["index"]: f for f in body["filtered"] if f["stage"] == "guardrail"}
    for index in ineligible:
        assert removed[index]["rule"] == "not_eligible"
        assert removed[index]["id"] == sample_request["candidates"][index]["id"]
        assert removed[index]["debug"]["guardrails"]["not_eligible"] is True
    answered = {c["id"] for c in body["candidates"]}
    assert not answered & {sample_request["candidates"][i]["id"] for i in ineligible}


def test_prediction_guardrail_uses_calibrated_probability(
    client_factory: Callable[..., TestClient], store_copy: tuple[Path, Path], sample_request: dict[str, Any]
) -> None:
    store, policies = store_copy
    path = policies / "home" / "1.yaml"
    policy = yaml.safe_load(path.read_text())
    policy["guardrails"][0]["above"] = 0.0  # every candidate has p_report > 0
    path.write_text(yaml.safe_dump(policy))
    client = client_factory(store=store, policies=policies)
    sample_request["options"] = {"return_filtered": True}
    body = client.post("/v1/score", json=sample_request).json()
    assert body["candidates"] == []
    assert {f["rule"] for f in body["filtered"]} == {"report_risk"}


def test_filtered_list_only_on_request(client: TestClient, sample_request: dict[str, Any]) -> None:
    sample_request["options"] = {}
    assert "filtered" not in client.post("/v1/score", json=sample_request).json()


def test_top_k_option_and_policy_pin(client: TestClient, sample_request: dict[str, Any]) -> None:
    sample_request["options"] = {"top_k": 3}
    sample_request["policy_version"] = "1"
    body = client.post("/v1/score", json=sample_request).json()
    assert len(body["candidates"]) == 3 and body["versions"]["policy_version"] == "1"


def test_context_override_changes_the_weights(client: TestClient, sample_request: dict[str, Any]) -> None:
    sample_request["options"] = {"debug": True}
    sample_request["context"]["attributes"] = {"user_segment": "new"}
    body = client.post("/v1/score", json=sample_request).json()
    assert body["overrides"] == ["new_users_safer"]
    hide = next(t for t in body["candidates"][0]["debug"]["terms"] if t["name"] == "hide_penalty")
    assert hide["weight"] == -4.0


def _error(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body


@pytest.mark.parametrize(
    ("edit", "field", "index"),
    [
        (lambda r: r["candidates"][4]["features"].pop("item_quality"), None, None),  # has a default: fine
        (lambda r: r["context"]["features"].pop("user_activity"), "candidates[0].features.user_activity", 0),
        (lambda r: r["candidates"][2]["features"].update(item_price="cheap"), "candidates[2].features.item_price", 2),
        (lambda r: r["candidates"][3]["features"].update(item_type=7), "candidates[3].features.item_type", 3),
        (lambda r: r["candidates"][6].update(id=r["candidates"][1]["id"]), "candidates[6].id", 6),
        (lambda r: r["candidates"][7].pop("id"), "candidates[7].id", 7),
        (lambda r: r["candidates"][8].update(score=1), "candidates[8].score", 8),
        (lambda r: r["candidates"][9].update(features=[1, 2]), "candidates[9].features", 9),
        (lambda r: r["candidates"][1]["attributes"].update(margin="high"), "candidates[1].attributes.margin", 1),
        (lambda r: r.update(candidates=[]), "candidates", None),
        (lambda r: r.pop("request_id"), "request_id", None),
        (lambda r: r["options"].update(top_k=0), "options.top_k", None),
        (lambda r: r.update(extra_field=True), "extra_field", None),
    ],
)
def test_invalid_requests_get_422_naming_field_and_candidate(
    client: TestClient, sample_request: dict[str, Any], edit: Any, field: str | None, index: int | None
) -> None:
    edit(sample_request)
    response = client.post("/v1/score", content=json.dumps(sample_request),
                           headers={"content-type": "application/json"})
    if field is None:
        assert response.status_code == 200
        return
    assert response.status_code == 422, response.text
    error = _error(response)
    assert error["code"] == "invalid_request"
    detail = error["details"][0]
    assert detail["field"] == field and detail.get("candidate_index") == index
    assert detail["fix"]


@pytest.mark.parametrize("raw", [b'{"request_id": "r", "candidates": [NaN]}', b"{truncated", b"[1, 2]", b""])
def test_unparseable_bodies_get_422(client: TestClient, raw: bytes) -> None:
    response = client.post("/v1/score", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert _error(response)["details"][0]["field"] == "body"


def test_overflowing_numbers_are_rejected_as_not_finite(client: TestClient, sample_request: dict[str, Any]) -> None:
    sample_request["candidates"][5]["features"]["item_price"] = 123.0
    raw = json.dumps(sample_request).replace("123.0", "1e400", 1)
    response = client.post("/v1/score", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "infinity" in _error(response)["message"]


def test_wrong_content_type_is_named(client: TestClient, sample_request: dict[str, Any]) -> None:
    response = client.post("/v1/score", content=json.dumps(sample_request), headers={"content-type": "text/plain"})
    assert response.status_code == 415
    assert _error(response)["details"][0]["field"] == "content-type"


def test_too_many_candidates_and_too_large_bodies_get_413(
    client_factory: Callable[..., TestClient], sample_request: dict[str, Any]
) -> None:
    client = client_factory(max_candidates=10, max_body_bytes=8_192)
    small = dict(sample_request, candidates=sample_request["candidates"][:11])
    response = client.post("/v1/score", json=small)
    assert response.status_code == 413
    assert "10" in _error(response)["message"]
    response = client.post("/v1/score", json=sample_request)  # ~12 kB compact
    assert response.status_code == 413
    assert _error(response)["details"][0]["field"] == "body"


def test_unknown_surface_and_policy_version_get_404(client: TestClient, sample_request: dict[str, Any]) -> None:
    response = client.post("/v1/score", json=dict(sample_request, surface="search"))
    assert response.status_code == 404 and "search" in _error(response)["message"]
    response = client.post("/v1/score", json=dict(sample_request, policy_version="7"))
    assert response.status_code == 404 and "'7'" in _error(response)["message"]


def test_not_ready_gets_503(
    client_factory: Callable[..., TestClient], tmp_path: Path, sample_request: dict[str, Any]
) -> None:
    client = client_factory(policies=tmp_path / "missing")
    response = client.post("/v1/score", json=sample_request)
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert _error(response)["code"] == "not_ready"
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "policies folder not found" in ready.json()["problems"][0]


def test_event_loop_and_worker_thread_answer_alike(
    client_factory: Callable[..., TestClient], sample_request: dict[str, Any]
) -> None:
    """FUSIONRANK_SCORE_IN_THREAD only moves where the work runs, never what it answers."""
    sample_request["options"] = {"debug": True, "return_filtered": True}
    answers = []
    for in_thread in (True, False):
        answer = client_factory(score_in_thread=in_thread).post("/v1/score", json=sample_request)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        body.pop("timings_ms")
        answers.append(body)
    assert answers[0] == answers[1]
    assert answers[0]["filtered"]


def test_default_scoring_and_probes_never_hop_to_a_worker_thread(
    client: TestClient, sample_request: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No worker-thread round trip per request: neither for the scoring (on the event loop by default)
    nor for a dependency (FastAPI runs a plain `def` dependency on a thread; ours are `async def`)."""
    import anyio.to_thread

    real_run_sync = anyio.to_thread.run_sync
    hops: list[str] = []

    async def counting_run_sync(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        hops.append(getattr(func, "__name__", repr(func)))
        return await real_run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting_run_sync)
    assert client.post("/v1/score", json=sample_request).status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert hops == []
