"""The two-stage cascade: the first stage's top_n reach the model, the rest are cut and explained."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from app.control.loader import load_snapshot
from app.errors import InvalidRequest
from app.protocol.response import score_response
from app.protocol.schemas import ScoreResponse
from app.protocol.score import decode_score
from app.serving.answer import AnswerRequest, answer
from app.serving.bundle import ServingSnapshot
from app.serving.cascade import first_stage_scores, score_request, take_candidates
from app.serving.scorer import score
from tests.cascade_helpers import cascade_policy, copy_bundle_as


def _snapshot(store_copy: tuple[Path, Path], **cascade: Any) -> ServingSnapshot:
    store, policies = store_copy
    copy_bundle_as(store, "demo_light")
    cascade_policy(policies, "3", **cascade)
    (policies / "home" / "active").write_text("3\n")
    snapshot = load_snapshot(store, policies)
    assert snapshot.problems == ()
    return snapshot


def _answer(snapshot: ServingSnapshot, body: dict[str, Any]) -> tuple[dict[str, Any], AnswerRequest]:
    body = {**body, "options": {"debug": True, "return_filtered": True}}
    envelope, call = decode_score(orjson.dumps(body), "application/json", max_candidates=1000,
                                  max_decoded_bytes=10**8)
    answered = answer(snapshot, call)
    response = score_response(envelope, call.candidates, answered.outcome)
    ScoreResponse.model_validate(response)  # the documented shape
    return response, call


def test_the_first_stage_passes_its_top_n_and_the_answer_names_both_bundles(
    store_copy: tuple[Path, Path], sample_request: dict[str, Any]
) -> None:
    snapshot = _snapshot(store_copy, top_n=25, task="click")
    response, call = _answer(snapshot, sample_request)
    binding = snapshot.route("home").binding(None)
    stage = binding.first_stage
    assert stage is not None
    scores = first_stage_scores(stage, call.candidates)
    best = set(np.argsort(-scores)[:25].tolist())
    assert response["versions"]["first_stage_model"] == "demo_light"
    assert response["versions"]["model"] == "demo_ranker"
    cascade = response["cascade"]
    assert (cascade["scored"], cascade["passed"], len(cascade["cut"])) == (40, 25, 15)
    cut = {c["index"] for c in cascade["cut"]}
    assert cut == set(range(40)) - best  # the 15 lowest first-stage scores, each with its score
    assert [c["first_stage_score"] for c in cascade["cut"]] == sorted(scores[sorted(cut)].tolist(), reverse=True)
    assert {f["index"] for f in response["filtered"] if f["stage"] == "cascade"} == cut
    assert not {int(call.candidates.ids.index(c["id"])) for c in response["candidates"]} & cut
    # The passed candidates are ranked exactly as the main model alone ranks them.
    passed = sorted(best)
    alone = score(binding, take_candidates(call.candidates, np.array(passed, dtype=np.intp)))
    assert [c["id"] for c in response["candidates"]] == [call.candidates.ids[passed[i]] for i in alone.ranked.tolist()]
    assert response["timings_ms"]["first_stage"] >= 0


def test_the_policy_utility_is_the_default_first_stage_score(
    store_copy: tuple[Path, Path], sample_request: dict[str, Any]
) -> None:
    # The first stage is a copy of the main model: by the policy's utility it cuts only what the main
    # model would rank below its top 25, so the answer is the one the main model gives alone.
    snapshot = _snapshot(store_copy, top_n=25)
    response, call = _answer(snapshot, sample_request)
    route = snapshot.route("home")
    plain = score(route.versions["1"], call.candidates)
    assert [c["id"] for c in response["candidates"]] == [call.candidates.ids[i] for i in plain.ranked.tolist()]
    assert response["cascade"]["task"] is None


def test_a_request_with_no_more_than_top_n_candidates_skips_the_first_stage(
    store_copy: tuple[Path, Path], sample_request: dict[str, Any]
) -> None:
    snapshot = _snapshot(store_copy, top_n=40, task="click")
    response, _ = _answer(snapshot, sample_request)
    assert response["cascade"]["cut"] == [] and response["cascade"]["passed"] == 40
    assert "first_stage" not in response["timings_ms"]


def test_a_bad_value_among_the_passed_is_named_at_its_request_position(
    store_copy: tuple[Path, Path], sample_request: dict[str, Any]
) -> None:
    snapshot = _snapshot(store_copy, top_n=25, task="click")
    binding = snapshot.route("home").binding(None)
    _, call = _answer(snapshot, sample_request)
    assert binding.first_stage is not None
    scores = first_stage_scores(binding.first_stage, call.candidates)
    worst_passed = int(np.argsort(-scores)[24])  # passed on, so the main model reads its attributes
    sample_request["candidates"][worst_passed]["attributes"]["margin"] = "a lot"
    _, bad = decode_score(orjson.dumps(sample_request), "application/json", max_candidates=1000,
                          max_decoded_bytes=10**8)
    with pytest.raises(InvalidRequest) as info:
        score_request(binding, bad.candidates)
    assert f"candidates[{worst_passed}].attributes.margin" in info.value.message
    assert info.value.details[0].value is not None and info.value.details[0].value.index == worst_passed


def test_columnar_requests_are_cut_like_row_requests(
    store_copy: tuple[Path, Path], sample_request: dict[str, Any]
) -> None:
    snapshot = _snapshot(store_copy, top_n=25, task="click")
    rows, _ = _answer(snapshot, sample_request)
    names = {n for c in sample_request["candidates"] for section in ("features", "attributes") for n in c[section]}
    columns: dict[str, list[Any]] = {"id": [c["id"] for c in sample_request["candidates"]]}
    for name in sorted(names):
        columns[name] = [c["features"].get(name, c["attributes"].get(name)) for c in sample_request["candidates"]]
    body = {k: v for k, v in sample_request.items() if k != "candidates"} | {"columns": columns}
    by_columns, _ = _answer(snapshot, body)
    assert [c["id"] for c in by_columns["candidates"]] == [c["id"] for c in rows["candidates"]]
    assert by_columns["cascade"]["cut"] == rows["cascade"]["cut"]


def test_a_ranking_block_runs_on_the_passed_candidates_and_its_debug_keeps_request_positions(
    store_copy: tuple[Path, Path], sample_request: dict[str, Any]
) -> None:
    from app.offline.demo_ranking import demo_policy_v2
    from tests.conftest import write_policy

    store, policies = store_copy
    copy_bundle_as(store, "demo_light")
    spec = {"model": {"name": "demo_light", "version": "1"}, "calibration_version": "1", "top_n": 25, "task": "click"}
    write_policy(policies, "3", lambda data: data.update(demo_policy_v2(data), version="3", cascade=spec))
    (policies / "home" / "active").write_text("3\n")
    snapshot = load_snapshot(store, policies)
    assert snapshot.problems == ()
    for i, candidate in enumerate(sample_request["candidates"]):
        candidate["attributes"]["is_new"] = i % 9 == 0
    response, call = _answer(snapshot, sample_request)
    binding = snapshot.route("home").binding(None)
    passed = sorted(set(range(40)) - {c["index"] for c in response["cascade"]["cut"]})
    alone = score(binding, take_candidates(call.candidates, np.array(passed, dtype=np.intp)))
    assert [c["id"] for c in response["candidates"]] == [call.candidates.ids[passed[i]] for i in alone.ranked.tolist()]
    assert alone.ranking is not None
    for row in response["candidates"]:
        i = passed.index(call.candidates.ids.index(row["id"]))
        assert row["debug"]["ranking"]["score"] == pytest.approx(float(alone.ranking.score[i]))
        if i in alone.ranking.promoted:
            assert row["debug"]["ranking"]["promoted_by"] == alone.ranking.promoted[i]
