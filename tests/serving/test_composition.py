"""Utility terms, overrides, guardrails and slate rules on hand-made arrays."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from app.artifacts import PolicyFile
from app.artifacts.loading import load_manifest
from app.artifacts.policy import SlateRules
from app.errors import InvalidRequest
from app.serving.attributes import extract_attributes
from app.serving.guardrails import evaluate_guardrails
from app.serving.policy import CompiledPolicy
from app.serving.slate import apply_slate, occurrence_rank, value_codes
from app.serving.utility import compose_utility
from tests.conftest import BUNDLE

MANIFEST = load_manifest(BUNDLE)  # tasks: click, purchase, hide, report


def _policy(**changes: Any) -> CompiledPolicy:
    data: dict[str, Any] = {
        "schema_version": 1, "surface": "home", "name": "t", "version": "1",
        "model": {"name": "demo_ranker", "version": "1"}, "calibration_version": "1",
        "attributes": {"margin": "number", "creator": "string", "sponsored": "boolean", "eligible": "boolean"},
        "utility": [
            {"name": "click", "task": "click", "weight": 1.0},
            {"name": "gmv", "task": "purchase", "weight": 2.0, "attribute": "margin"},
            {"name": "hide", "task": "hide", "weight": -3.0},
        ],
        "guardrails": [
            {"name": "report_risk", "task": "report", "above": 0.5},
            {"name": "ineligible", "attribute": "eligible", "equals": False},
            {"name": "needs_creator", "attribute": "creator", "required": True},
        ],
        "overrides": [{"name": "cautious", "when": {"segment": "new"}, "weights": {"hide": -10.0},
                       "thresholds": {"report_risk": 0.1}}],
        "governance": {"owner": "o", "approved_by": ["r"], "created_at": "2026-01-01T00:00:00Z",
                       "change_note": "test"},
    }
    data.update(changes)
    return CompiledPolicy(PolicyFile.model_validate(data), MANIFEST)


P = np.array([  # click, purchase, hide, report
    [0.5, 0.1, 0.01, 0.0],
    [0.2, 0.3, 0.10, 0.2],
    [0.9, 0.0, 0.00, 0.7],
])
ATTRS = [
    {"margin": 10.0, "creator": "a", "eligible": True},
    {"creator": "b", "eligible": False},
    {"margin": 1, "eligible": True},
]


def test_terms_are_weight_times_prediction_times_attribute() -> None:
    policy = _policy()
    attributes = extract_attributes(ATTRS, policy.file.attributes)
    contributions, utility = compose_utility(P, attributes, policy, policy.resolve({}).weights)
    expected = np.array([
        [0.5, 2.0 * 0.1 * 10.0, -3.0 * 0.01],
        [0.2, 0.0, -0.3],  # a missing margin contributes 0
        [0.9, 0.0, 0.0],
    ])
    np.testing.assert_allclose(contributions, expected)
    np.testing.assert_allclose(utility, expected.sum(axis=1))


def test_overrides_replace_weights_and_thresholds_when_context_matches() -> None:
    policy = _policy()
    base, new = policy.resolve({"segment": "old"}), policy.resolve({"segment": "new"})
    assert base.overrides == () and new.overrides == ("cautious",)
    assert base.weights[2] == -3.0 and new.weights[2] == -10.0
    assert base.above[0] == 0.5 and new.above[0] == 0.1


def test_guardrails_report_every_decision() -> None:
    policy = _policy()
    attributes = extract_attributes(ATTRS, policy.file.attributes)
    triggered = evaluate_guardrails(P, attributes, policy, policy.resolve({}))
    np.testing.assert_array_equal(triggered, [[False, False, False], [False, True, False], [True, False, True]])
    strict = evaluate_guardrails(P, attributes, policy, policy.resolve({"segment": "new"}))
    assert strict[1, 0]  # p_report 0.2 > 0.1 once the override applies


def test_attribute_in_guardrail_and_type_errors() -> None:
    policy = _policy(guardrails=[{"name": "blocked", "attribute": "creator", "in": ["b", "z"]}])
    attributes = extract_attributes(ATTRS, policy.file.attributes)
    np.testing.assert_array_equal(evaluate_guardrails(P, attributes, policy, policy.resolve({}))[:, 0],
                                  [False, True, False])
    with pytest.raises(InvalidRequest) as info:
        extract_attributes([{"margin": "ten"}], policy.file.attributes)
    assert info.value.details[0].field == "candidates[0].attributes.margin"


def test_occurrence_rank_counts_earlier_equal_values_and_ignores_missing() -> None:
    codes = value_codes(["a", "b", "a", None, "a", None, "b"])
    np.testing.assert_array_equal(codes, [0, 1, 0, -1, 0, -1, 1])
    np.testing.assert_array_equal(occurrence_rank(codes), [0, 0, 1, 0, 2, 0, 1])


def test_slate_orders_by_utility_applies_rules_then_top_k() -> None:
    utility = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    attributes = extract_attributes(
        [{"creator": "a", "sponsored": True}, {"creator": "a", "sponsored": True},
         {"creator": "a", "sponsored": False}, {"creator": "b", "sponsored": True},
         {"creator": "c", "sponsored": True}, {"creator": "d"}],
        {"creator": "string", "sponsored": "boolean"},
    )
    rules = SlateRules.model_validate({
        "max_per_value": [{"name": "per_creator", "attribute": "creator", "max": 2}],
        "max_matching": [{"name": "sponsored_cap", "attribute": "sponsored", "equals": True, "max": 2}],
    })
    kept = np.array([5, 4, 3, 2, 1, 0])
    result = apply_slate(kept, utility, attributes, rules, top_k=2)
    assert [(idx.tolist(), rule) for idx, rule in result.dropped] == [([2], "per_creator"), ([3, 4], "sponsored_cap")]
    assert result.ranked.tolist() == [0, 1] and result.truncated.tolist() == [5]


def test_slate_ties_keep_request_order() -> None:
    result = apply_slate(np.arange(4), np.array([1.0, 2.0, 1.0, 2.0]), {}, SlateRules(), None)
    assert result.ranked.tolist() == [1, 3, 0, 2]
