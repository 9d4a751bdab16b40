from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.artifacts.policy import PolicyFile
from app.errors import PolicyError
from app.offline.tuning import LogError, read_candidate_log, replay_policy
from app.offline.tuning.demo_logs import write_log
from app.offline.tuning.outcomes import replay_outcomes

#            a      b      c      d      e      f
P_CLICK = [0.30, 0.25, 0.19, 0.50, 0.40, 0.10]
P_HIDE = [0.10, 0.01, 0.00, 0.20, 0.00, 0.30]
CREATOR = ["c1", "c1", "c1", "c2", "c3", "c4"]
ELIGIBLE = [True, True, True, True, False, True]


def _policy(**changes: Any) -> PolicyFile:
    data: dict[str, Any] = {
        "schema_version": 1, "surface": "home", "name": "tiny", "version": "7",
        "model": {"name": "demo_ranker", "version": "1"}, "calibration_version": "1",
        "attributes": {"creator_id": "string", "eligible": "boolean"},
        "utility": [{"name": "click", "task": "click", "weight": 1.0},
                    {"name": "hide_penalty", "task": "hide", "weight": -1.0}],
        "guardrails": [{"name": "hide_risk", "task": "hide", "above": 0.25},
                       {"name": "not_eligible", "attribute": "eligible", "equals": False}],
        "slate": {"top_k": 2, "max_per_value": [{"name": "creator_diversity", "attribute": "creator_id", "max": 2}]},
        "overrides": [{"name": "new_users", "when": {"user_segment": "new"}, "weights": {"hide_penalty": -10.0}}],
        "governance": {"owner": "t", "approved_by": ["r"], "created_at": "2026-11-01T00:00:00Z", "change_note": "t"},
    }
    data.update(changes)
    return PolicyFile.model_validate(data)


@pytest.fixture
def tiny_log(tmp_path: Path) -> Path:
    """Two requests with the same six candidates: a regular user (g1) and a new one (g2)."""
    return write_log(tmp_path / "tiny.csv", {
        "group_id": np.repeat(["g1", "g2"], 6), "candidate_id": np.tile(list("abcdef"), 2),
        "p_click": np.tile(P_CLICK, 2), "p_hide": np.tile(P_HIDE, 2),
        "creator_id": np.tile(CREATOR, 2), "eligible": np.tile(ELIGIBLE, 2),
        "user_tenure": np.repeat(["regular", "new"], 6),
    })


def test_replay_reproduces_a_hand_computed_ranking(tiny_log: Path) -> None:
    log = read_candidate_log(tiny_log)
    replay = replay_policy(log, _policy(), "tiny.yaml", label="tiny", context={"user_segment": "user_tenure"})
    ids = log.columns["candidate_id"]
    served = [[ids[r] for r in row if r >= 0] for row in replay.served]
    # g1: e (not eligible) and f (p_hide 0.30 > 0.25) are filtered; utility = click - hide:
    #     d 0.30 > b 0.24 > a 0.20 > c 0.19; c is a third c1 item (creator_diversity); top_k 2 -> d, b
    # g2 (new user, hide weight -10): c 0.19 > b 0.15 > a -0.70 > d -1.50; a is a third c1 -> c, b
    assert served == [["d", "b"], ["c", "b"]]
    np.testing.assert_allclose(replay.utility[:6], np.array(P_CLICK) - np.array(P_HIDE))
    assert [ids[r] for r in np.flatnonzero(replay.slate_rule == 0)] == ["c", "a"]
    outcomes = replay_outcomes(log, replay, k=2)
    assert outcomes["expected:click"] == pytest.approx(((0.50 + 0.25) + (0.19 + 0.25)) / 2)
    assert outcomes["filtered:hide_risk"] == pytest.approx(2 / 12)
    assert outcomes["filtered:not_eligible"] == pytest.approx(2 / 12)
    assert outcomes["filtered:creator_diversity"] == pytest.approx(2 / 12)
    # served slots: d (c2), b (c1), c (c1), b (c1) -> creator shares 3/4 and 1/4
    assert outcomes["creator_hhi"] == pytest.approx((3 / 4) ** 2 + (1 / 4) ** 2)
    # NDCG@2 of click for g1: served gains 0.50, 0.25; ideal 0.50, 0.40 (e counts though it is filtered)
    g1 = (0.50 + 0.25 / np.log2(3)) / (0.50 + 0.40 / np.log2(3))
    g2 = (0.19 + 0.25 / np.log2(3)) / (0.50 + 0.40 / np.log2(3))
    assert outcomes["ndcg@2:click"] == pytest.approx((g1 + g2) / 2)


def test_a_policy_without_guardrails_filters_nothing(tiny_log: Path) -> None:
    log = read_candidate_log(tiny_log)
    replay = replay_policy(log, _policy(guardrails=[], overrides=[]), "open.yaml", label="open")
    ids = log.columns["candidate_id"]
    assert (replay.guardrail == -1).all()
    # utility = click - hide: e 0.40 (kept: no eligibility rule) > d 0.30 > b 0.24 > a 0.20 > c 0.19 > f -0.20
    assert [[ids[r] for r in row] for row in replay.served] == [["e", "d"], ["e", "d"]]
    assert [m for m in replay_outcomes(log, replay, 2) if m.startswith("filtered:")] == ["filtered:creator_diversity"]

def test_policy_reading_what_the_log_lacks_is_refused(tiny_log: Path) -> None:
    log = read_candidate_log(tiny_log)
    with pytest.raises(PolicyError, match="p_purchase"):
        replay_policy(log, _policy(utility=[{"name": "buy", "task": "purchase", "weight": 1.0}], overrides=[]),
                      "tiny.yaml", label="x")
    with pytest.raises(LogError, match="margin"):
        replay_policy(log, _policy(attributes={"creator_id": "string", "eligible": "boolean", "margin": "number"}),
                      "tiny.yaml", label="x")


def test_slate_ndcg_leaves_unobserved_labels_out(tmp_path: Path) -> None:
    labels = [1.0, 0.0, np.nan, 1.0, 1.0, 0.0]  # c's click was never observed
    path = write_log(tmp_path / "labelled.parquet", {
        "group_id": np.repeat(["g1", "g2"], 6), "candidate_id": np.tile(list("abcdef"), 2),
        "p_click": np.tile(P_CLICK, 2), "p_hide": np.tile(P_HIDE, 2), "label_click": np.tile(labels, 2),
        "creator_id": np.tile(CREATOR, 2), "eligible": np.tile(ELIGIBLE, 2),
        "user_tenure": np.repeat(["regular", "new"], 6),
    })
    log = read_candidate_log(path)
    replay = replay_policy(log, _policy(), "tiny.yaml", label="tiny", context={"user_segment": "user_tenure"})
    outcomes = replay_outcomes(log, replay, k=2)
    # g1 serves d (1), b (0): DCG 1; ideal over judged a, b, d, e, f: 1 + 1/log2(3)
    # g2 serves c (unjudged, skipped), b (0) -> b moves up to rank 1: DCG 0
    assert outcomes["ndcg@2:click"] == pytest.approx((1.0 / (1.0 + 1.0 / np.log2(3)) + 0.0) / 2)


@pytest.mark.parametrize("segment", ["regular", "new"])
def test_replay_serves_what_the_service_serves(tmp_path: Path, sample_request: dict[str, Any], segment: str) -> None:
    """The bundle's sample request through the real scorer, then its calibrated predictions as a log."""
    from app.control.loader import load_snapshot
    from app.serving import ScoreInput, score
    from tests.conftest import MODEL_STORE, POLICIES

    binding = load_snapshot(MODEL_STORE, POLICIES).route("home").binding(None)
    candidates = sample_request["candidates"]
    outcome = score(binding, ScoreInput(
        ids=[c["id"] for c in candidates], features=[c["features"] for c in candidates],
        attributes=[c["attributes"] for c in candidates], context_features=sample_request["context"]["features"],
        context_attributes={"user_segment": segment},
    ))
    columns: dict[str, Any] = {"group_id": np.zeros(len(candidates), dtype=np.int64),
                               "candidate_id": [c["id"] for c in candidates], "segment": [segment] * len(candidates)}
    for t, task in enumerate(binding.bundle.manifest.task_names()):
        columns[f"p_{task}"] = outcome.probabilities[:, t]
    for name in ("creator_id", "sponsored", "eligible", "margin"):
        columns[name] = [c["attributes"][name] for c in candidates]
    log = read_candidate_log(write_log(tmp_path / "served.parquet", columns))
    replay = replay_policy(log, binding.policy.file, "policies/home/1.yaml", label="home/1",
                           context={"user_segment": "segment"})
    assert replay.served[0][replay.served[0] >= 0].tolist() == outcome.ranked.tolist()
    np.testing.assert_allclose(replay.utility, outcome.utility, rtol=0, atol=0)
