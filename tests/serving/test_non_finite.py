"""The scorer's net for numbers that cannot be ranked: a NaN prediction (the model emitted NaN) or a
non-finite utility (a policy that bypassed validation) removes the candidate with the service's own rule."""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pytest

from app.artifacts.bounds import MAX_ATTRIBUTE_MAGNITUDE, MAX_WEIGHT
from app.artifacts.policy import PolicyFile, UtilityTerm, utility_bound
from app.control.loader import BundleCache
from app.serving.bundle import PolicyBinding
from app.serving.policy import CompiledPolicy
from app.serving.scorer import ScoreInput, score
from app.serving.shadow import shadow_rank
from app.serving.shadow_model import ShadowJob, compare_models
from app.serving.utility import compose_utility, non_finite
from tests.conftest import BUNDLE, MODEL_STORE, POLICIES

NONE: tuple[int, ...] = ()


@pytest.fixture(scope="module")
def binding() -> PolicyBinding:
    return BundleCache(MODEL_STORE, 1).bind(POLICIES / "home" / "1.yaml")


def _request(**changes: Any) -> ScoreInput:
    body = json.loads((BUNDLE / "sample_request.json").read_text())
    candidates = body["candidates"]
    return ScoreInput(
        ids=[c["id"] for c in candidates], features=[c["features"] for c in candidates],
        attributes=[c["attributes"] for c in candidates], context_features=body["context"].get("features", {}),
        context_attributes=body["context"].get("attributes", {}), **changes,
    )


def _with_weight(binding: PolicyBinding, term: str, weight: float) -> PolicyBinding:
    """The binding with one weight replaced without validation (`model_copy` does not validate)."""
    file = binding.policy.file
    utility = [t.model_copy(update={"weight": weight}) if t.name == term else t for t in file.utility]
    policy = CompiledPolicy(file.model_copy(update={"utility": utility}), binding.bundle.manifest)
    return PolicyBinding(policy, binding.bundle, binding.calibration)


def test_finite_numbers_cost_one_pass_and_flag_nothing() -> None:
    p = np.full((5, 4), 0.5)
    assert non_finite(p, np.zeros(5), NONE) is None
    assert non_finite(p, np.zeros(5), (3,)) is None


def test_each_row_is_flagged_once_under_its_cause() -> None:
    p = np.full((5, 4), 0.5)
    p[1, 0] = np.nan  # a task the utility reads: the utility is NaN too, the cause is the prediction
    p[3, 3] = np.nan  # a task only a guardrail reads: the utility stays finite
    utility = np.array([1.0, np.nan, np.inf, 2.0, -np.inf])
    flagged = non_finite(p, utility, (3,))
    assert flagged is not None
    assert flagged.prediction.tolist() == [False, True, False, True, False]
    assert flagged.utility.tolist() == [False, False, True, False, True]
    # The NaN in the unread column is found even when every utility is finite.
    p = np.full((5, 4), 0.5)
    p[3, 3] = np.nan
    only = non_finite(p, np.ones(5), (3,))
    assert only is not None and only.prediction.tolist() == [False, False, False, True, False]


def test_an_overflowing_product_warns_nothing_and_is_flagged(binding: PolicyBinding) -> None:
    policy = _with_weight(binding, "purchase_margin", 1e308).policy
    p = np.full((2, 4), 0.5)
    attributes = {"margin": np.array([1e6, 1.0]), "creator_id": ["a", "b"], "sponsored": [False, False],
                  "eligible": [True, True]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, utility = compose_utility(p, attributes, policy, policy.resolve({}).weights)
    assert np.isinf(utility[0]) and np.isfinite(utility[1])
    flagged = non_finite(p, utility, policy.unread_tasks)
    assert flagged is not None and flagged.utility.tolist() == [True, False]


def test_the_scorer_filters_non_finite_utilities_first_and_never_ranks_them(binding: PolicyBinding) -> None:
    broken = _with_weight(binding, "purchase_margin", 1e308)
    request = _request()
    margins = [a.get("margin") for a in request.attributes]
    for i in (0, 5):
        request.attributes[i]["margin"] = 1e6
    outcome = score(broken, request)
    groups = {f.rule: f for f in outcome.filtered}
    assert groups["non_finite_utility"].stage == "guardrail"
    assert groups["non_finite_utility"].indices.tolist() == [0, 5]
    assert np.isfinite(outcome.utility[outcome.ranked]).all()
    assert not set(outcome.ranked.tolist()) & {0, 5}
    # Each removed candidate is reported once, under one rule.
    removed = np.concatenate([f.indices for f in outcome.filtered])
    assert len(removed) == len(set(removed.tolist()))
    # The shadow comparison removes them as the served answer does.
    shadow = shadow_rank(score(binding, request), broken, request)
    assert not set(shadow.tolist()) & {0, 5} and len(shadow) == len(outcome.ranked)
    assert margins  # the sample has margins to overflow


def test_nan_logits_from_the_model_are_filtered_as_a_prediction_problem(binding: PolicyBinding) -> None:
    """Features finite as float32 (3e38) on which the demo model emits NaN: without the net, p_report NaN
    passes the report_risk guardrail (NaN > 0.002 is False) and the candidate is ranked with a NaN utility."""
    request = _request()
    for i in (2, 9):
        for name, value in request.features[i].items():
            if isinstance(value, float):
                request.features[i][name] = 3.0e38
    outcome = score(binding, request)
    assert np.isnan(outcome.logits[[2, 9]]).all()
    groups = {f.rule: f.indices.tolist() for f in outcome.filtered}
    assert groups["non_finite_prediction"] == [2, 9] and "non_finite_utility" not in groups
    assert np.isfinite(outcome.probabilities[outcome.ranked]).all()
    assert np.isfinite(outcome.utility[outcome.ranked]).all()


def test_the_validation_dry_run_matches_the_service_arithmetic(binding: PolicyBinding) -> None:
    """`utility_bound` (schema validation) and `compose_utility` (serving) agree at the extremes: a policy
    at the bound stays finite on the largest legal attributes; past it (forced around validation), it overflows."""
    file = binding.policy.file
    terms = [UtilityTerm(name=f"v{i}", task="purchase", weight=MAX_WEIGHT / 2, attribute="margin") for i in range(300)]
    legal = PolicyFile.model_validate({**file.to_yaml_dict(), "overrides": [],
                                       "utility": [t.model_dump() for t in terms]})
    assert utility_bound(legal.utility) == pytest.approx(1.5e308)
    extreme_p = np.ones((2, 4))
    attributes = {"margin": np.array([MAX_ATTRIBUTE_MAGNITUDE, -MAX_ATTRIBUTE_MAGNITUDE]),
                  "creator_id": ["a", "b"], "sponsored": [False, False], "eligible": [True, True]}
    compiled = CompiledPolicy(legal, binding.bundle.manifest)
    _, utility = compose_utility(extreme_p, attributes, compiled, compiled.resolve({}).weights)
    assert np.isfinite(utility).all() and utility[0] == pytest.approx(1.5e308)
    more = legal.model_copy(update={"utility": [*legal.utility, *terms[:100]]})  # 400 terms: 2e308
    with pytest.raises(ValueError, match="overflow"):
        utility_bound(more.utility)
    compiled = CompiledPolicy(more, binding.bundle.manifest)
    _, utility = compose_utility(extreme_p, attributes, compiled, compiled.resolve({}).weights)
    assert not np.isfinite(utility).any()


def test_the_shadow_model_shift_skips_nan_predictions(binding: PolicyBinding) -> None:
    served = np.full((3, 4), 0.25)
    served[1] = np.nan  # the served model emitted NaN for candidate 1 (filtered from the answer)
    shadow = np.full((3, 4), 0.5)
    tasks = binding.bundle.manifest.task_names()
    job = ShadowJob("home", binding, binding, _request(), np.array([0, 2]), served)
    report = compare_models(job, np.array([2, 0]), shadow, tasks, tasks)
    assert report.shifts == dict.fromkeys(tasks, 0.25)
    served[:] = np.nan  # nothing to compare: no shift rather than a NaN one
    assert compare_models(job, np.array([2, 0]), shadow, tasks, tasks).shifts == {}
