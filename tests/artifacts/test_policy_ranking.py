"""Every way a policy's `ranking` block can be refused: each message names the field and the fix."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from app.artifacts import PolicyFile
from app.artifacts.policy_ranking import RankingRules, ranking_utility_bound
from app.control.loader import BundleCache
from app.control.warmup import GoldenBatch
from app.errors import PolicyError
from app.protocol.rows import decode_score_request
from tests.conftest import POLICIES, write_policy

BASE: dict[str, Any] = yaml.safe_load((POLICIES / "home" / "1.yaml").read_text())


def _policy(ranking: dict[str, Any], **changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data["attributes"].update({"is_new": "boolean", "age": "number", "emb": "vector"})
    data["ranking"] = ranking
    data.update(changes)
    return data


def _refused(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        PolicyFile.model_validate(data)
    return str(info.value)


MIN = {"name": "fresh", "attribute": "is_new", "equals": True, "min": 3, "within": 10}


@pytest.mark.parametrize(
    ("ranking", "expected"),
    [
        ({"form": "product"}, "ranking.epsilon: the product form needs an epsilon"),
        ({"form": "product", "epsilon": 0.0}, "ranking.epsilon: the product form needs an epsilon"),
        ({"epsilon": 0.1}, "ranking.epsilon belongs to form: product"),
        ({"form": "product", "epsilon": 0.01, "normalize": {"click": "zscore"}}, "ranking.normalize.click: a z-score"),
        ({"normalize": {"dwell": "rank"}}, "ranking.normalize.dwell: no utility term named 'dwell'"),
        ({"normalize": {"click": "minmax"}}, "ranking.normalize.click"),
        ({"diversity": [{"name": "d", "attribute": "author", "decay": 0.3}]},
         "ranking.diversity[0].attribute: attribute 'author' is not declared"),
        ({"diversity": [{"name": "d", "attribute": "creator_id", "decay": 1.5}]}, "ranking.diversity.0.decay"),
        ({"diversity": [{"name": "d", "attribute": "creator_id", "decay": 0.3, "floor": -1}]},
         "ranking.diversity.0.floor"),
        ({"diversity": [{"name": "d", "attribute": "emb", "decay": 0.3}]},
         "ranking.diversity[0].attribute: attribute 'emb' is declared vector"),
        ({"mmr": {"name": "m", "attribute": "creator_id", "lambda": 2}}, "ranking.mmr.lambda"),
        ({"minimums": [{**MIN, "min": 11}]}, "minimum 'fresh': min 11 is more than within 10"),
        ({"minimums": [{**MIN, "equals": None, "below": 3}]}, "ranking.minimums[0].attribute: attribute 'is_new' is"
                                                              " declared boolean, this needs one of ['number']"),
        ({"minimums": [{**MIN, "below": 3}]}, "give exactly one of `equals` or `below`/`above`"),
        ({"max_share": [{"name": "s", "attribute": "sponsored", "equals": True, "share": 1.5}]},
         "ranking.max_share.0.share"),
        ({"max_share": [{"name": "x", "attribute": "sponsored", "equals": True, "share": 0.2}],
          "minimums": [{**MIN, "name": "x"}]}, "ranking: rule names must be unique: ['x']"),
        ({"history": {"fatigue": {"attribute": "age", "decay": 0.5}}},
         "ranking.history.fatigue.attribute: attribute 'age' is declared number"),
        ({"history": {"fatigue": {"attribute": "creator_id", "decay": 0.0}}}, "ranking.history.fatigue.decay"),
    ],
)
def test_a_bad_ranking_block_is_refused_naming_the_field(ranking: dict[str, Any], expected: str) -> None:
    assert expected in _refused(_policy(ranking))


def test_a_rule_named_like_the_history_filter_is_refused() -> None:
    data = _policy({"history": {"previously_seen": True}})
    data["guardrails"][1]["name"] = "previously_seen"
    assert "ranking: rule name 'previously_seen' is also a guardrail" in _refused(data)


def test_a_vector_attribute_is_only_for_mmr() -> None:
    data = _policy({"mmr": {"name": "m", "attribute": "emb", "lambda": 0.5}})
    PolicyFile.model_validate(data)  # fine for MMR
    data["guardrails"][1]["attribute"] = "emb"
    assert "guardrails[1].attribute: attribute 'emb' is a vector" in _refused(data)


def test_a_minimum_must_stay_inside_the_head_exploration_leaves_in_order() -> None:
    softmax = {"method": "softmax", "temperature": 1.0, "protect_top": 5}
    message = _refused(_policy({"minimums": [MIN]}, exploration=softmax))
    assert "ranking.minimums[0].within: 10 reaches past the positions exploration leaves in order (5)" in message
    PolicyFile.model_validate(_policy({"minimums": [{**MIN, "within": 5}]}, exploration=softmax))
    greedy = {"method": "epsilon_greedy", "epsilon": 0.1, "ranks": [8, 12]}
    assert "keep `within` <= 7" in _refused(_policy({"minimums": [MIN]}, exploration=greedy))


def test_an_exponent_that_can_overflow_the_product_is_refused() -> None:
    data = _policy({"form": "product", "epsilon": 1e-6})
    data["utility"][3]["weight"] = -100.0
    message = _refused(data)
    assert "utility[3] ('report_penalty'): in the product form, (epsilon + p)^weight can reach" in message
    assert "a larger ranking.epsilon" in message


def test_an_override_that_raises_an_exponent_past_the_bound_is_refused() -> None:
    ranking = {"form": "product", "epsilon": 0.01}
    data = _policy(ranking)
    for term in data["utility"]:
        term["weight"] = {"click": 1.0, "hide_penalty": -0.5, "report_penalty": -0.2}.get(term["name"], term["weight"])
    data["overrides"][0]["weights"]["hide_penalty"] = -1.0
    PolicyFile.model_validate(data)
    data["overrides"][0]["weights"]["hide_penalty"] = -4.0  # with margin up to 1e300, (0.01)^-4 overflows
    assert "ranking.form: the product of the plain-term factors and the value terms can overflow" in _refused(data)


def test_the_bound_covers_normalised_terms_and_the_decay() -> None:
    terms = PolicyFile.model_validate(_policy({})).utility
    largest = {t.name: abs(t.weight) for t in terms}
    plain = ranking_utility_bound(terms, largest, RankingRules())
    normalised = ranking_utility_bound(terms, largest, RankingRules.model_validate(
        {"normalize": {"purchase_margin": "rank", "click": "zscore"}}))
    assert normalised == pytest.approx(10.0 * 1.0 + 0.05 + 2.0 + 20.0)  # a normalised value term is bounded by 1
    assert plain > 1e297  # the raw margin may reach 1e300


def test_a_ranking_refusal_names_the_file_at_activation(store_copy: tuple[Path, Path]) -> None:
    store, policies = store_copy
    path = write_policy(policies, "9", lambda p: p.update(ranking={"normalize": {"dwell": "rank"}}))
    golden = GoldenBatch(lambda body: decode_score_request(body, max_candidates=1000)[1])
    with pytest.raises(PolicyError) as info:
        golden.validate(path, BundleCache(store, 1))
    assert "9.yaml" in info.value.message and "ranking.normalize.dwell" in info.value.message


def test_policy_diff_shows_the_ranking_block_item_by_item() -> None:
    from app.artifacts.diff import diff_policies

    old = PolicyFile.model_validate(_policy({"diversity": [{"name": "d", "attribute": "creator_id", "decay": 0.3}]}))
    new = PolicyFile.model_validate(_policy({"diversity": [{"name": "d", "attribute": "creator_id", "decay": 0.5}],
                                             "minimums": [MIN]}))
    deltas = {(d.section, d.item, d.field, d.change) for d in diff_policies(old, new)}
    assert ("ranking", "d", "decay", "changed") in deltas
    assert ("ranking", "fresh", "", "added") in deltas
    assert not [d for d in diff_policies(old, old) if d.section == "ranking"]
