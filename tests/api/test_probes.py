"""Liveness, readiness, metrics, the error table and the OpenAPI document."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from app.api.errors import STATUS_BY_ERROR, status_for
from app.errors import ArtifactError, FusionrankError, InvalidRequest, NotFound, NotReady, PayloadTooLarge


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["surfaces"]["home"]["policy_version"] == "1"


def test_metrics_count_requests_and_stage_latency(client: TestClient, sample_request: dict[str, Any]) -> None:
    client.post("/v1/score", json=sample_request)
    client.post("/v1/score", json=dict(sample_request, surface="nope"))
    text = client.get("/metrics").text
    assert 'fusionrank_http_requests_total{route="/v1/score",status="200"}' in text
    assert 'fusionrank_http_requests_total{route="/v1/score",status="404"}' in text
    for stage in ("decode", "features", "inference", "calibration", "utility", "encode"):
        assert f'fusionrank_stage_duration_seconds_count{{stage="{stage}"}}' in text
    assert 'fusionrank_candidates_filtered_total{rule="not_eligible",stage="guardrail",surface="home"}' in text
    assert ('fusionrank_active_info{calibration_version="1",model="demo_ranker",model_version="1",'
            'policy_version="1",surface="home"} 1.0') in text
    assert "fusionrank_ready 1.0" in text


def test_unknown_paths_are_one_bounded_label(client: TestClient) -> None:
    assert client.get("/no/such/path").status_code == 404
    assert 'route="other",status="404"' in client.get("/metrics").text


def test_error_table_maps_each_error_class() -> None:
    assert status_for(PayloadTooLarge("x")) == 413
    assert status_for(InvalidRequest("x")) == 422
    assert status_for(NotFound("x")) == 404
    assert status_for(NotReady("x")) == 503
    assert status_for(ArtifactError("f", "field", "m", "fix")) == 422
    assert status_for(FusionrankError("x")) == 500
    assert STATUS_BY_ERROR[-1][0] is FusionrankError  # the catch-all stays last


def test_openapi_documents_the_score_body(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    content = schema["paths"]["/v1/score"]["post"]["requestBody"]["content"]
    assert content["application/json"]["schema"] == {
        "oneOf": [{"$ref": "#/components/schemas/ScoreRequest"}, {"$ref": "#/components/schemas/ColumnarScoreRequest"}]
    }
    assert "application/vnd.apache.arrow.stream" in content
    assert "columns" in schema["components"]["schemas"]["ColumnarScoreRequest"]["properties"]
    request = schema["components"]["schemas"]["ScoreRequest"]
    assert request["properties"]["candidates"]["items"]["properties"]["id"]["maxLength"] == 256


def test_broken_active_policy_leaves_surface_unserved(
    client_factory: Callable[..., TestClient], store_copy: tuple[Path, Path]
) -> None:
    store, policies = store_copy
    (policies / "home" / "1.yaml").write_text("schema_version: 1\n")
    client = client_factory(store=store, policies=policies)
    ready = client.get("/readyz")
    assert ready.status_code == 503
    problems = " ".join(ready.json()["problems"])
    assert "1.yaml" in problems and "not served" in problems
