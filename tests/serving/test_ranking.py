"""The `ranking` block on hand-made arrays: utility forms, normalisation, decay, MMR, shares, minimums, history."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from app.artifacts import PolicyFile
from app.artifacts.loading import load_manifest
from app.artifacts.policy import SlateRules
from app.artifacts.policy_ranking import MAX_ZSCORE, RankingRules
from app.errors import InvalidRequest
from app.serving.attributes import extract_attributes
from app.serving.forms import normalise
from app.serving.policy import CompiledPolicy
from app.serving.ranking import rank_slate, ranking_debug, seen_mask
from app.serving.slate import apply_slate
from app.serving.utility import compose_utility
from tests.conftest import BUNDLE

MANIFEST = load_manifest(BUNDLE)  # tasks: click, purchase, hide, report


def _policy(ranking: dict[str, Any] | None, **changes: Any) -> CompiledPolicy:
    data: dict[str, Any] = {
        "schema_version": 1, "surface": "home", "name": "t", "version": "1",
        "model": {"name": "demo_ranker", "version": "1"}, "calibration_version": "1",
        "attributes": {"margin": "number", "creator": "string", "fresh": "boolean", "emb": "vector"},
        "utility": [
            {"name": "click", "task": "click", "weight": 1.0},
            {"name": "gmv", "task": "purchase", "weight": 0.5, "attribute": "margin"},
            {"name": "hide", "task": "hide", "weight": -2.0},
        ],
        "governance": {"owner": "o", "approved_by": ["r"], "created_at": "2026-01-01T00:00:00Z",
                       "change_note": "test"},
    }
    if ranking is not None:
        data["ranking"] = ranking
    data.update(changes)
    return CompiledPolicy(PolicyFile.model_validate(data), MANIFEST)


def _rules(**ranking: Any) -> RankingRules:
    return RankingRules.model_validate(ranking)


P = np.array([  # click, purchase, hide, report
    [0.5, 0.1, 0.01, 0.0],
    [0.2, 0.3, 0.10, 0.0],
    [0.9, 0.0, 0.00, 0.0],
])
ATTRS = [{"margin": 10.0, "creator": "a"}, {"creator": "b"}, {"margin": 1, "creator": "a"}]


def test_a_policy_without_ranking_composes_exactly_as_before() -> None:
    plain, summed = _policy(None), _policy({"form": "sum"})
    assert not plain.formed and not summed.formed  # the sum form without normalisation keeps the fast path
    attributes = extract_attributes(ATTRS, plain.file.attributes)
    c1, u1 = compose_utility(P, attributes, plain, plain.resolve({}).weights)
    c2, u2 = compose_utility(P, attributes, summed, summed.resolve({}).weights)
    np.testing.assert_array_equal(u1, u2)
    np.testing.assert_array_equal(c1, c2)


def test_product_form_multiplies_powers_and_scales_by_the_value_terms() -> None:
    policy = _policy({"form": "product", "epsilon": 0.01})
    attributes = extract_attributes(ATTRS, policy.file.attributes)
    contributions, utility = compose_utility(P, attributes, policy, policy.resolve({}).weights)
    value = np.array([0.5 * 0.1 * 10.0, 0.0, 0.0])  # a missing margin counts 0
    expected = (0.01 + P[:, 0]) ** 1.0 * (0.01 + P[:, 2]) ** -2.0 * (1.0 + value)
    np.testing.assert_allclose(utility, expected, rtol=1e-12)
    np.testing.assert_allclose(contributions[:, 0], np.log(0.01 + P[:, 0]), rtol=1e-12)  # log-factors in debug
    np.testing.assert_allclose(contributions[:, 1], value)


def test_rank_normalisation_is_within_each_request_and_ties_share_their_rank() -> None:
    values = np.array([3.0, 1.0, 3.0, 2.0, 5.0, 4.0])
    got = normalise(values, "rank", np.array([0, 4]))
    np.testing.assert_allclose(got, [5 / 6, 0.0, 5 / 6, 1 / 3, 1.0, 0.0])
    np.testing.assert_allclose(normalise(np.array([7.0]), "rank", None), [0.5])


def test_zscore_normalisation_clips_and_a_constant_term_is_zero() -> None:
    got = normalise(np.array([1.0, 2.0, 3.0, 4.0, 4.0]), "zscore", np.array([0, 3]))
    np.testing.assert_allclose(got[:3], [-np.sqrt(1.5), 0.0, np.sqrt(1.5)])
    np.testing.assert_array_equal(got[3:], [0.0, 0.0])
    outlier = np.r_[np.zeros(999), 1.0]
    assert normalise(outlier, "zscore", None).max() == MAX_ZSCORE  # unclipped it would be ~31.6


def test_a_normalised_term_changes_the_ranking() -> None:
    policy = _policy({"normalize": {"gmv": "rank"}})
    attributes = extract_attributes(ATTRS, policy.file.attributes)
    contributions, _ = compose_utility(P, attributes, policy, policy.resolve({}).weights)
    np.testing.assert_allclose(contributions[:, 1], 0.5 * np.array([1.0, 0.25, 0.25]))  # 5 > 0 = 0: ties


def test_diversity_decay_multiplies_by_the_position_within_the_value_with_a_floor() -> None:
    utility = np.array([10.0, 9.0, 8.0, 7.0, 1.0])
    attributes = {"creator": ["a", "a", "a", "a", "b"]}
    ranking = _rules(diversity=[{"name": "d", "attribute": "creator", "decay": 0.5, "floor": 0.2}])
    slate, trace = rank_slate(np.arange(5), utility, attributes, ranking, SlateRules(), None, {})
    np.testing.assert_allclose(trace.decay["d"], [1.0, 0.5, 0.25, 0.2, 1.0])
    np.testing.assert_allclose(trace.score, [10.0, 4.5, 2.0, 1.4, 1.0])
    assert slate.ranked.tolist() == [0, 1, 2, 3, 4]
    plain = apply_slate(np.arange(5), utility, attributes, SlateRules(), None)
    assert plain.ranked.tolist() == [0, 1, 2, 3, 4]
    # b moves above the third a once the decay is steep enough
    steep = _rules(diversity=[{"name": "d", "attribute": "creator", "decay": 0.9}])
    slate, _ = rank_slate(np.arange(5), utility, attributes, steep, SlateRules(), None, {})
    assert slate.ranked.tolist() == [0, 4, 1, 2, 3]


def test_a_negative_score_is_lowered_by_the_decay_too() -> None:
    utility = np.array([-1.0, -1.5, -1.2])
    ranking = _rules(diversity=[{"name": "d", "attribute": "creator", "decay": 0.5}])
    slate, trace = rank_slate(np.arange(3), utility, {"creator": ["a", "b", "a"]}, ranking, SlateRules(), None, {})
    np.testing.assert_allclose(trace.score, [-1.0, -1.5, -1.2 * 1.5])
    assert slate.ranked.tolist() == [0, 1, 2]


def test_categorical_mmr_equals_the_greedy_selection() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = 30
        utility = rng.normal(size=n)
        values = [f"c{v}" for v in rng.integers(0, 5, n)]
        lam = float(rng.uniform(0.2, 0.9))
        ranking = _rules(mmr={"name": "m", "attribute": "creator", "lambda": lam})
        slate, _ = rank_slate(np.arange(n), utility, {"creator": values}, ranking, SlateRules(), 10, {})
        assert slate.ranked.tolist() == _greedy(utility, lambda i, j, v=values: float(v[i] == v[j]), lam, 10)


def test_vector_mmr_equals_the_greedy_selection_and_prunes_exactly() -> None:
    rng = np.random.default_rng(4)
    for spread in (0.1, 5.0):  # 5.0: most candidates are pruned
        n, d = 60, 8
        utility = rng.normal(size=n) * spread
        vectors = rng.normal(size=(n, d))
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors[int(np.argmax(utility))] = np.nan  # a missing vector is similar to nothing
        vectors[int(np.argsort(-utility)[1])] = 0.0  # nor is a zero vector
        unit[int(np.argmax(utility))] = 0.0
        unit[int(np.argsort(-utility)[1])] = 0.0
        ranking = _rules(mmr={"name": "m", "attribute": "emb", "lambda": 0.6})
        slate, trace = rank_slate(np.arange(n), utility, {"emb": vectors}, ranking, SlateRules(), 12, {})
        expected = _greedy(utility, lambda i, j, u=unit: max(0.0, float(u[i] @ u[j])), 0.6, 12)
        assert slate.ranked.tolist() == expected
        assert trace.mmr_penalty is not None and trace.mmr_penalty[expected[0]] == 0.0


def _greedy(utility: np.ndarray, similarity: Any, lam: float, k: int) -> list[int]:
    chosen: list[int] = []
    order = list(np.argsort(-utility, kind="stable"))
    for _ in range(k):
        best = max(order, key=lambda i: (lam * utility[i] - (1 - lam) * max((similarity(i, j) for j in chosen),
                                                                             default=0.0), -order.index(i)))
        chosen.append(int(best))
        order.remove(best)
    return chosen


def test_max_share_drops_past_the_share_of_the_slate() -> None:
    utility = np.arange(10, 0, -1, dtype=np.float64)
    attributes = {"fresh": [True] * 6 + [False] * 4}
    ranking = _rules(max_share=[{"name": "s", "attribute": "fresh", "equals": True, "share": 0.5}])
    slate, _ = rank_slate(np.arange(10), utility, attributes, ranking, SlateRules(), 6, {})
    assert slate.ranked.tolist() == [0, 1, 2, 6, 7, 8]  # 3 of 6
    (dropped, rule), = slate.dropped
    assert rule == "s" and dropped.tolist() == [3, 4, 5]
    # without top_k the slate is what remains, so each drop lowers the cap: 10 -> cap 5, 9 -> cap 4, 8 -> cap 4
    slate, _ = rank_slate(np.arange(10), utility, attributes, ranking, SlateRules(), None, {})
    assert slate.ranked.tolist() == [0, 1, 2, 3, 6, 7, 8, 9]


def test_minimum_promotes_the_best_matching_into_the_head_and_reports_a_shortfall() -> None:
    utility = np.arange(10, 0, -1, dtype=np.float64)
    attributes = {"fresh": [False] * 7 + [True, None, True]}
    ranking = _rules(minimums=[{"name": "fresh", "attribute": "fresh", "equals": True, "min": 2, "within": 4}])
    slate, trace = rank_slate(np.arange(10), utility, attributes, ranking, SlateRules(), 6, {})
    assert slate.ranked.tolist() == [0, 1, 7, 9, 2, 3]  # promoted to the head's last slots, displaced below
    assert trace.promoted == {7: "fresh", 9: "fresh"} and not trace.shortfalls
    assert ranking_debug(trace, 7)["promoted_by"] == "fresh"
    wanting = _rules(minimums=[{"name": "fresh", "attribute": "fresh", "equals": True, "min": 3, "within": 4}])
    slate, trace = rank_slate(np.arange(10), utility, attributes, wanting, SlateRules(), 6, {})
    assert slate.ranked.tolist() == [0, 1, 7, 9, 2, 3]  # both promoted, still one short
    assert [(s.rule, s.wanted, s.got, s.within) for s in trace.shortfalls] == [("fresh", 3, 2, 4)]


def test_a_minimum_on_a_number_range_composes_with_the_caps() -> None:
    utility = np.arange(8, 0, -1, dtype=np.float64)
    attributes = {"age": np.array([50.0, 40, 30, 20, 2, 1, 3, np.nan]), "creator": list("aabbccdd")}
    caps = SlateRules.model_validate({"max_per_value": [{"name": "per", "attribute": "creator", "max": 1}]})
    ranking = _rules(minimums=[{"name": "new", "attribute": "age", "below": 12.0, "min": 2, "within": 3}])
    slate, _ = rank_slate(np.arange(8), utility, attributes, ranking, caps, None, {})
    # the cap keeps one per creator (0, 2, 4, 6); the minimum then brings 6 (age 3) above 2 (age 30)
    assert slate.ranked.tolist() == [0, 4, 6, 2]


def test_fatigue_decays_a_creator_by_its_negative_feedback() -> None:
    utility = np.array([1.0, 0.9, 0.8])
    ranking = _rules(history={"fatigue": {"attribute": "creator", "decay": 0.5, "floor": 0.3}})
    attributes = {"creator": ["a", "b", None]}
    slate, trace = rank_slate(np.arange(3), utility, attributes, ranking, SlateRules(), None, {"a": 3})
    assert trace.fatigue is not None
    np.testing.assert_allclose(trace.fatigue, [0.3, 1.0, 1.0])
    assert slate.ranked.tolist() == [1, 2, 0]
    slate, trace = rank_slate(np.arange(3), utility, attributes, ranking, SlateRules(), None, {})
    assert trace.fatigue is None and slate.ranked.tolist() == [0, 1, 2]


def test_seen_mask_marks_the_ids_the_request_saw() -> None:
    assert seen_mask(["x", "y", "z"], ["z", "w"]).tolist() == [False, False, True]


def test_vector_attributes_are_read_and_checked() -> None:
    declared = {"emb": "vector"}
    got = extract_attributes([{"emb": [1, 2.5]}, {}, {"emb": [0, 0]}], declared)["emb"]
    assert isinstance(got, np.ndarray) and got.shape == (3, 2) and np.isnan(got[1]).all()
    for bad, message in (([{"emb": [1, 2]}, {"emb": [1]}], "others have 2"), ([{"emb": "x"}], "list of 1 to 64"),
                         ([{"emb": [1] * 65}], "list of 1 to 64"), ([{"emb": [True]}], "list of 1 to 64")):
        with pytest.raises(InvalidRequest, match=message):
            extract_attributes(bad, declared)


def test_exploration_draws_below_the_minimums_head_with_exact_propensities() -> None:
    from app.artifacts.policy import Exploration
    from app.serving.exploration import explore, softmax_propensities

    utility = np.arange(12, 0, -1, dtype=np.float64)
    attributes = {"fresh": [False] * 10 + [True, True]}
    ranking = _rules(minimums=[{"name": "fresh", "attribute": "fresh", "equals": True, "min": 2, "within": 4}])
    slate, trace = rank_slate(np.arange(12), utility, attributes, ranking, SlateRules(), 8, {})
    pool = np.concatenate([slate.ranked, slate.truncated])
    exploration = Exploration(method="softmax", temperature=1.0, protect_top=4)
    served, propensity = explore(exploration, pool, trace.score, len(slate.ranked), "req-1")
    assert served[:4].tolist() == slate.ranked[:4].tolist() == [0, 1, 10, 11]  # the minimum holds in the head
    tail = pool[4:]
    drawn = [int(np.flatnonzero(tail == s)[0]) for s in served[4:]]
    np.testing.assert_allclose(propensity[4:], softmax_propensities(trace.score[tail], np.array(drawn)))


def test_a_nan_input_stays_nan_and_does_not_spoil_the_request() -> None:
    values = np.array([1.0, np.nan, 3.0, 2.0])
    np.testing.assert_allclose(normalise(values, "rank", None), [0.0, np.nan, 1.0, 0.5])
    np.testing.assert_allclose(normalise(values, "zscore", None), [-np.sqrt(1.5), np.nan, np.sqrt(1.5), 0.0])


def test_an_empty_slate_reports_the_minimum_it_cannot_meet() -> None:
    ranking = _rules(minimums=[{"name": "fresh", "attribute": "fresh", "equals": True, "min": 1, "within": 3}],
                     diversity=[{"name": "d", "attribute": "creator", "decay": 0.5}],
                     mmr={"name": "m", "attribute": "creator", "lambda": 0.5})
    attributes = {"fresh": [True, False], "creator": ["a", "a"]}
    slate, trace = rank_slate(np.empty(0, dtype=np.intp), np.array([1.0, 2.0]), attributes, ranking, SlateRules(),
                              5, {})
    assert slate.ranked.size == 0 and [s.got for s in trace.shortfalls] == [0]
