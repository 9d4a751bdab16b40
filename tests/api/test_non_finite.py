"""A candidate whose prediction or utility is not finite is filtered with the service's own rule, counted,
and never answered as `null` (JSON) or a null/NaN cell (Arrow)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import orjson
import pyarrow as pa
from fastapi.testclient import TestClient

from app.api.state import ServiceState
from tests.api.test_columnar import RESPONSE_KEY, post_arrow, post_json, to_arrow
from tests.api.test_feedback import sample

FILTERED = "fusionrank_candidates_filtered_total"


def _filtered(client: TestClient, rule: str) -> float | None:
    return sample(client, FILTERED, surface="home", stage="guardrail", rule=rule)


def _nan_logits(body: dict[str, Any], indices: list[int]) -> list[str]:
    """Legal features (finite as float32) on which the demo model's logits come out NaN."""
    for i in indices:
        features = body["candidates"][i]["features"]
        for name, value in features.items():
            if isinstance(value, float):
                features[name] = 3.0e38
    return [body["candidates"][i]["id"] for i in indices]


def _no_null(value: Any) -> None:
    """Recursively: no None, no NaN, no infinity anywhere."""
    if isinstance(value, dict):
        for v in value.values():
            _no_null(v)
    elif isinstance(value, list):
        for v in value:
            _no_null(v)
    else:
        assert value is not None
        if isinstance(value, float):
            assert math.isfinite(value)


def _arrow_answer(response: Any) -> tuple[pa.Table, dict[str, Any]]:
    assert response.status_code == 200, response.text
    table = pa.ipc.open_stream(response.content).read_all()
    rest: dict[str, Any] = orjson.loads(table.schema.metadata[RESPONSE_KEY])
    return table, rest


def test_the_built_in_rules_exist_at_zero_from_start_up(client_factory: Callable[..., TestClient]) -> None:
    client = client_factory()
    assert _filtered(client, "non_finite_prediction") == 0.0
    assert _filtered(client, "non_finite_utility") == 0.0


def test_nan_predictions_are_filtered_and_counted_in_json_and_arrow(
    client_factory: Callable[..., TestClient], sample_request: dict[str, Any]
) -> None:
    client = client_factory()
    sample_request["options"] = {"return_filtered": True}
    bad = _nan_logits(sample_request, [0, 7])
    response = post_json(client, sample_request)
    assert response.status_code == 200, response.text
    assert b"null" not in response.content and b"NaN" not in response.content
    answer = response.json()
    _no_null(answer)
    assert {c["id"] for c in answer["candidates"]}.isdisjoint(bad)
    unrankable = [f for f in answer["filtered"] if f["rule"] == "non_finite_prediction"]
    assert sorted(f["id"] for f in unrankable) == sorted(bad)
    assert {f["stage"] for f in unrankable} == {"guardrail"}
    assert len(answer["candidates"]) == 20  # the rest is ranked as usual
    assert _filtered(client, "non_finite_prediction") == 2.0
    # The served-prediction histogram counts the 38 candidates with a prediction; its sum stays a number.
    labels = {"model": "demo_ranker", "model_version": "1", "calibration_version": "1", "arm": "stable",
              "task": "report"}
    assert sample(client, "fusionrank_served_prediction_count", **labels) == 38
    assert math.isfinite(sample(client, "fusionrank_served_prediction_sum", **labels) or math.nan)

    table, rest = _arrow_answer(post_arrow(client, to_arrow(sample_request)))
    for column in table.columns[2:]:  # utility and every task's prediction
        assert column.null_count == 0
        assert all(math.isfinite(v) for v in column.to_pylist())
    assert set(table.column("id").to_pylist()).isdisjoint(bad)
    _no_null(rest)
    assert sorted(f["id"] for f in rest["filtered"] if f["rule"] == "non_finite_prediction") == sorted(bad)
    assert _filtered(client, "non_finite_prediction") == 4.0


def test_an_overflowing_utility_is_filtered_not_answered_as_null(
    client_factory: Callable[..., TestClient], sample_request: dict[str, Any]
) -> None:
    """The red-team repro: a value-term weight of 1e308 and a margin of 1e6. Validation now refuses that
    weight (tests/artifacts/test_policy_validation.py); here it is forced into the served policy, as a
    defect that bypassed validation would, to show the serving-time net."""
    client = client_factory()
    state: ServiceState = client.app.state.fusionrank  # type: ignore[attr-defined]
    policy = state.snapshot.route("home").binding(None).policy
    policy.resolve({}).weights[policy.term_names.index("purchase_margin")] = 1e308
    sample_request["options"] = {"return_filtered": True}
    huge = [0, 3, 11]
    for i in huge:
        sample_request["candidates"][i]["attributes"]["margin"] = 1e6
    ids = [sample_request["candidates"][i]["id"] for i in huge]

    response = post_json(client, sample_request)
    assert response.status_code == 200, response.text
    assert b"null" not in response.content
    answer = response.json()
    _no_null(answer)
    assert sorted(f["id"] for f in answer["filtered"] if f["rule"] == "non_finite_utility") == sorted(ids)
    assert answer["candidates"] and {c["id"] for c in answer["candidates"]}.isdisjoint(ids)
    assert _filtered(client, "non_finite_utility") == 3.0

    table, rest = _arrow_answer(post_arrow(client, to_arrow(sample_request)))
    assert table.column("utility").null_count == 0
    assert all(math.isfinite(u) for u in table.column("utility").to_pylist())
    _no_null(rest)
    assert sorted(f["id"] for f in rest["filtered"] if f["rule"] == "non_finite_utility") == sorted(ids)
    assert _filtered(client, "non_finite_utility") == 6.0


def test_a_margin_beyond_the_attribute_bound_is_refused_by_name(
    client: TestClient, sample_request: dict[str, Any]
) -> None:
    sample_request["candidates"][4]["attributes"]["margin"] = 1e301
    response = post_json(client, sample_request)
    assert response.status_code == 422
    detail = response.json()["error"]["details"][0]
    assert detail["field"] == "candidates[4].attributes.margin" and detail["candidate_index"] == 4
    assert "1e+300" in detail["message"] and "1e+300" in detail["fix"]
    sample_request["candidates"][4]["attributes"]["margin"] = -1e300  # the bound itself is legal
    assert post_json(client, sample_request).status_code == 200
