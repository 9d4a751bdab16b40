"""`tune constrained` with a declared segment: the bounds must hold within each value, not only overall."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.offline.tuning import ConstrainedTuner, read_candidate_log
from app.offline.tuning.logs import LogError

BOUND = 0.12


def _tuner(**segment: object) -> ConstrainedTuner:
    return ConstrainedTuner(tasks=["purchase", "hide"], negative={"hide"}, primary="purchase", labels=False,
                            bounds={"hide": BOUND}, k=10, **segment)  # type: ignore[arg-type]


def test_a_bound_met_overall_but_not_for_one_segment_is_met_in_each_with_the_segment(
    segmented_log_path: Path,
) -> None:
    log = read_candidate_log(segmented_log_path, attributes=False, columns=["user_segment"])
    reported = _tuner(segment="user_segment", enforce_segments=False).fit(log).to_dict()
    # overall the bound holds (power users pull the mean down) ...
    assert reported["feasible"] == {"train": True, "holdout": True}
    assert reported["top_k_mean_prediction"]["holdout"]["hide"] <= BOUND
    by_value = reported["segments"]["values"]
    assert set(by_value) == {"new", "power"} and not reported["segments"]["enforced"]
    # ... but new users' top 10 hide far more, on the held-out requests too
    assert by_value["new"]["top_k_mean_prediction"]["holdout"]["hide"] > 1.5 * BOUND
    assert by_value["new"]["feasible"]["holdout"] is False and by_value["power"]["feasible"]["holdout"] is True
    assert reported["segments"]["feasible_holdout"] is False
    assert by_value["new"]["groups"]["train"] + by_value["new"]["groups"]["holdout"] == 150

    enforced = _tuner(segment="user_segment").fit(log).to_dict()
    by_value = enforced["segments"]["values"]
    assert enforced["segments"]["enforced"] and enforced["segments"]["feasible_holdout"] is True
    for value in ("new", "power"):
        assert by_value[value]["top_k_mean_prediction"]["holdout"]["hide"] <= BOUND
        assert by_value[value]["feasible"] == {"train": True, "holdout": True}
    assert enforced["feasible"] == {"train": True, "holdout": True}
    # it costs purchase NDCG: the hide term weighs more than when the bound held only overall
    assert enforced["weights"]["hide"] > reported["weights"]["hide"]
    assert enforced["primary"]["holdout"] < reported["primary"]["holdout"]


def test_a_segment_column_is_checked_and_bounded(segmented_log_path: Path) -> None:
    log = read_candidate_log(segmented_log_path, attributes=False, columns=["user_segment", "creator_id"])
    with pytest.raises(LogError, match=r"user_tenure.*no such column") as missing:
        _tuner(segment="user_tenure").fit(log)
    assert "user_segment" in missing.value.message  # the columns it could have named
    # a column that differs between the candidates of a request is a candidate attribute: per-item means
    assert _tuner(segment="creator_id", enforce_segments=False).fit(log).to_dict()["segments"]["kind"] == "candidate"
    with pytest.raises(LogError, match="has 2 values, more than the 1 allowed"):
        _tuner(segment="user_segment", max_segments=1).fit(log)
    with pytest.raises(ValueError, match=r"value 'new' has .* fewer than --segment-min-groups 200"):
        _tuner(segment="user_segment", segment_min_groups=200).fit(log)


def test_a_candidate_attribute_bounds_the_items_holding_each_value(risky_items_log_path: Path) -> None:
    """The mean p_hide of the risky items shown in the top 10 (pooled over requests) must meet the bound too."""
    log = read_candidate_log(risky_items_log_path, attributes=False, columns=["item_kind"])
    bound = 0.08
    reported = ConstrainedTuner(tasks=["purchase", "hide"], negative={"hide"}, primary="purchase", labels=False,
                                bounds={"hide": bound}, k=10, segment="item_kind",
                                enforce_segments=False).fit(log).to_dict()
    assert reported["segments"]["kind"] == "candidate"
    assert reported["feasible"]["holdout"] and reported["top_k_mean_prediction"]["holdout"]["hide"] <= bound
    risky = reported["segments"]["values"]["risky"]
    assert risky["top_k_mean_prediction"]["holdout"]["hide"] > 1.2 * bound and not risky["feasible"]["holdout"]

    enforced = ConstrainedTuner(tasks=["purchase", "hide"], negative={"hide"}, primary="purchase", labels=False,
                                bounds={"hide": bound}, k=10, segment="item_kind").fit(log).to_dict()
    assert enforced["segments"]["feasible_holdout"] and enforced["feasible"]["holdout"]
    for value in ("risky", "plain"):
        assert enforced["segments"]["values"][value]["top_k_mean_prediction"]["holdout"]["hide"] <= bound
    assert enforced["weights"]["hide"] > reported["weights"]["hide"] + 0.3
