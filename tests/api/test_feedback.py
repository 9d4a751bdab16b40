"""POST /v1/feedback: per-event validation, counters, and the served-prediction drift metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.monitoring import OTHER

VERSIONS = {"model": "demo_ranker", "model_version": "1", "calibration_version": "1"}


def event(event_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "event_id": event_id, "task": "click", "prediction": 0.25, "label": 1, "segment": {"device": "ios"},
        **VERSIONS, "event_time": "2026-11-26T07:00:00Z", **overrides,
    }


def sample(client: TestClient, name: str, **labels: str) -> float | None:
    registry = client.app.state.fusionrank.metrics.registry  # type: ignore[attr-defined]
    value: float | None = registry.get_sample_value(name, labels)
    return value


def test_good_events_are_counted_and_bad_ones_rejected_by_index(client_factory: Callable[..., TestClient]) -> None:
    client = client_factory()
    events = [
        event("a"),
        event("b", prediction=1.5),
        event("c", label=True),
        event("a"),
        event("d", task="dwell"),
        event("e", segment={"devise": "ios"}),
        event("f", calibration_version="9"),
        event("g", segment={"device": "fridge"}, label=0),
        event("h", event_time="2099-01-01T00:00:00Z"),
        event("i", model_version="7"),
        event("j", event_time="2026-11-26T07:00:00"),
        event("k", model="../../etc"),
        event("l", prediction=float("nan")) | {"prediction": "NaN"},
    ]
    response = client.post("/v1/feedback", json={"events": events})
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 2
    fields = {r["index"]: r["field"] for r in body["rejected"]}
    assert fields == {
        1: "prediction", 2: "label", 3: "event_id", 4: "task", 5: "segment.devise", 6: "calibration_version",
        8: "event_time", 9: "model_version", 10: "event_time", 11: "model", 12: "prediction",
    }
    reasons = {r["index"]: r["reason"] for r in body["rejected"]}
    assert "duplicate of event 0" in reasons[3]
    assert "['click', 'purchase', 'hide', 'report']" in reasons[4]
    assert "device" in reasons[5] and "fix" in reasons[5]
    labels = {**VERSIONS, "arm": "stable", "task": "click"}
    assert sample(client, "fusionrank_feedback_segment_events_total", **labels, field="device", value="ios") == 1
    assert sample(client, "fusionrank_feedback_segment_events_total", **labels, field="device", value=OTHER) == 1
    assert sample(client, "fusionrank_feedback_segment_label_sum_total", **labels, field="device", value=OTHER) == 0
    buckets = [
        sample(client, "fusionrank_feedback_events_total", **labels, bucket=f"{b:02d}") for b in range(10)
    ]
    assert buckets == [0] * 9 + [2]  # 0.25 is above the last click edge
    assert sample(client, "fusionrank_feedback_prediction_sum_total", **labels, bucket="09") == pytest.approx(0.5)
    assert sample(client, "fusionrank_feedback_rejected_total", field="prediction") == 2
    assert sample(client, "fusionrank_feedback_rejected_total", field="segment") == 1


def test_unknown_keys_do_not_grow_the_rejected_label_set(client_factory: Callable[..., TestClient]) -> None:
    client = client_factory()
    response = client.post("/v1/feedback", json={"events": [event("a", surprise=1)]})
    assert response.json()["rejected"] == [
        {"index": 0, "field": "surprise", "reason": "unknown field (fix: see the FeedbackEvent schema at /docs)"}
    ]
    assert sample(client, "fusionrank_feedback_rejected_total", field="other") == 1


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"events": []}, 422, "events"),
        ({"outcomes": [event("a")]}, 422, "outcomes"),
        ([event("a")], 422, "body"),
        ({"events": [event(str(i)) for i in range(6)]}, 413, "events"),
    ],
)
def test_a_bad_envelope_fails_the_whole_request(
    client_factory: Callable[..., TestClient], body: Any, status: int, field: str
) -> None:
    client = client_factory(feedback_max_events=5)
    response = client.post("/v1/feedback", json=body)
    assert response.status_code == status
    assert response.json()["error"]["details"][0]["field"] == field


def test_feedback_for_a_version_no_longer_served_is_read_from_the_store(
    client_factory: Callable[..., TestClient], store_copy: tuple[Any, Any]
) -> None:
    store, policies = store_copy
    # A second calibration version of the same model, not bound to any policy.
    calibrations = store / "demo_ranker" / "1" / "calibration"
    text = (calibrations / "1.json").read_text()
    (calibrations / "0.json").write_text(text.replace('"version": "1"', '"version": "0"', 1))
    client = client_factory(store=store, policies=policies)
    response = client.post("/v1/feedback", json={"events": [event("a", calibration_version="0")]})
    assert response.json() == {"accepted": 1, "rejected": [], "duplicates": []}
    labels = {**VERSIONS, "calibration_version": "0", "arm": "stable", "task": "click"}
    assert sample(client, "fusionrank_feedback_events_total", **labels, bucket="09") == 1


def test_feedback_names_its_arm_and_is_counted_under_it(client_factory: Callable[..., TestClient]) -> None:
    client = client_factory()
    response = client.post("/v1/feedback", json={"events": [event("a"), event("b", arm="canary"),
                                                             event("c", arm="both")]})
    body = response.json()
    assert body["accepted"] == 2 and [r["field"] for r in body["rejected"]] == ["arm"]
    for arm in ("stable", "canary"):
        labels = {**VERSIONS, "arm": arm, "task": "click"}
        assert sample(client, "fusionrank_feedback_events_total", **labels, bucket="09") == 1


def test_scoring_feeds_the_served_histogram_and_psi(
    client_factory: Callable[..., TestClient], sample_request: dict[str, Any]
) -> None:
    client = client_factory(drift_psi_interval_seconds=0.05, drift_psi_min_predictions=40)
    labels = {**VERSIONS, "arm": "stable", "task": "click"}
    assert sample(client, "fusionrank_served_prediction_count", **labels) == 0  # primed at start-up
    assert client.post("/v1/score", json=sample_request).status_code == 200
    # Every scored candidate counts, the 9 filtered ones included.
    assert sample(client, "fusionrank_served_prediction_count", **labels) == len(sample_request["candidates"])
    deadline = time.monotonic() + 5
    while sample(client, "fusionrank_prediction_psi", **labels) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    psi = sample(client, "fusionrank_prediction_psi", **labels)
    assert psi is not None and psi > 0
    text = client.get("/metrics").text
    assert 'fusionrank_served_prediction_bucket{arm="stable",calibration_version="1",le="+Inf"' in text


def test_openapi_documents_the_feedback_body(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    request = schema["paths"]["/v1/feedback"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert request == {"$ref": "#/components/schemas/FeedbackRequest"}
    item = schema["components"]["schemas"]["FeedbackRequest"]["properties"]["events"]["items"]
    assert {"prediction", "label", "segment", "event_time"} <= set(item["properties"])
