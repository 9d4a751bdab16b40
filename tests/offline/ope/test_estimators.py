"""Slate estimators: the formulas on hand-made slates, and against known truth on the bandit yardstick."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from app.offline.ope import SlateDR, SlateFeedback, SlateIPS, SlateSNIPS, effective_sample_size, evaluate_policy
from app.offline.ope.environment import BanditEnvironment, evaluate_seed
from app.offline.ope.evaluate import OpeSettings
from app.offline.tuning.logs import LogError, candidate_log
from app.offline.tuning.replay import replay_policy

# Two requests, two positions. Request 0: the target agrees at both positions; request 1 at the first only.
DATA = SlateFeedback(
    reward=np.array([[1.0, 0.0], [0.0, 1.0]]),
    logging=np.array([[0.5, 0.25], [0.5, 0.5]]),
    target=np.array([[1.0, 1.0], [1.0, 0.0]]),
    estimate=np.array([[0.4, 0.2], [0.3, 0.6]]),
    target_estimate=np.array([[0.4, 0.2], [0.3, 0.1]]),
    target_only_estimate=np.array([[0.4, 0.2], [0.3, 0.1]]),
)


def test_the_estimators_compute_the_prefix_weighted_formulas() -> None:
    # W = [[2, 8], [2, 0]]
    assert SlateIPS().estimate_policy_value(DATA) == pytest.approx((2 * 1 + 8 * 0 + 2 * 0 + 0 * 1) / 2)
    assert SlateSNIPS().estimate_policy_value(DATA) == pytest.approx((2 * 1 + 2 * 0) / 4 + (8 * 0 + 0) / 8)
    dr_0 = 0.4 + 2 * (1 - 0.4) + 2 * 0.2 + 8 * (0 - 0.2)
    dr_1 = 0.3 + 2 * (0 - 0.3) + 2 * 0.1 + 0 * (1 - 0.6)
    assert SlateDR().estimate_policy_value(DATA) == pytest.approx((dr_0 + dr_1) / 2)
    assert effective_sample_size(DATA).tolist() == pytest.approx([2.0, 1.0])


def test_the_interval_holds_the_estimate_and_is_reproducible() -> None:
    rng = np.random.default_rng(0)
    n = 500
    data = SlateFeedback(reward=rng.random((n, 3)), logging=np.full((n, 3), 0.5),
                         target=(rng.random((n, 3)) < 0.5).astype(float), estimate=np.full((n, 3), 0.5),
                         target_estimate=np.full((n, 3), 0.5), target_only_estimate=np.full((n, 3), 0.5))
    for estimator in (SlateIPS(), SlateSNIPS(), SlateDR()):
        first = estimator.estimate_interval(data, n_bootstrap=200, seed=3)
        assert first.lower < first.value < first.upper
        assert first == estimator.estimate_interval(data, n_bootstrap=200, seed=3)


ENV = BanditEnvironment()
TRUTH = ENV.true_value(ENV.target_weights, "click", n=100_000)


def test_dr_and_snips_are_unbiased_and_dr_covers_the_known_truth() -> None:
    reports = [evaluate_seed(ENV, 2500, seed, n_bootstrap=300) for seed in range(5)]
    logged = np.mean([r["logged"] for r in reports])
    assert abs(logged - TRUTH) > 0.05  # the logging policy's own value is no estimate of the target's
    for name in ("snips", "dr"):
        errors = [r["estimates"][name]["value"] - TRUTH for r in reports]
        assert abs(np.mean(errors)) < 0.03, (name, errors)
    covered = sum(r["estimates"]["dr"]["lower"] <= TRUTH <= r["estimates"]["dr"]["upper"] for r in reports)
    assert covered >= 4


def test_the_error_shrinks_as_the_log_grows() -> None:
    def rmse(n: int, name: str) -> float:
        values = [evaluate_seed(ENV, n, 50 + seed, n_bootstrap=2)["estimates"][name]["value"] for seed in range(4)]
        return float(np.sqrt(np.mean((np.array(values) - TRUTH) ** 2)))

    for name in ("snips", "dr"):
        assert rmse(3200, name) < 0.7 * rmse(400, name), name


def test_wrong_propensities_are_caught_by_the_yardstick() -> None:
    """With the logged propensities replaced by 1 (as if nothing was random) IPS misses the truth: the
    tolerance above is tight enough to fail an estimator fed the wrong weights."""
    table = ENV.joined_log(2500, 0)
    wrong = table.set_column(table.schema.get_field_index("propensity"), "propensity",
                             pa.array(np.where(table.column("position").is_null(), None, 1.0).tolist(), pa.float64()))
    log = candidate_log(wrong.append_column("group_id", wrong.column("request_id")), "wrong")
    replay = replay_policy(log, ENV.policy("target"), "target", label="target")
    report = evaluate_policy(log, replay, OpeSettings(k=ENV.k, metrics=("click",), n_bootstrap=2))
    assert abs(report["overall"]["click"]["estimates"]["ips"]["value"] - TRUTH) > 0.1


def test_a_log_without_propensities_is_refused_naming_the_column() -> None:
    table = ENV.joined_log(50, 0)
    table = table.drop_columns(["propensity"]).append_column("group_id", table.column("request_id"))
    log = candidate_log(table, "nopropensity.parquet")
    replay = replay_policy(log, ENV.policy("target"), "target", label="target")
    with pytest.raises(LogError, match="propensity"):
        evaluate_policy(log, replay, OpeSettings(k=ENV.k))


def test_a_zero_propensity_on_a_served_row_is_refused() -> None:
    table = ENV.joined_log(50, 0)
    position = table.column("position").to_pylist()
    zeroed = [0.0 if p is not None else None for p in position]
    table = table.set_column(table.schema.get_field_index("propensity"), "propensity", pa.array(zeroed, pa.float64()))
    log = candidate_log(table.append_column("group_id", table.column("request_id")), "zero.parquet")
    replay = replay_policy(log, ENV.policy("target"), "target", label="target")
    with pytest.raises(LogError, match=r"not in \(0, 1\]"):
        evaluate_policy(log, replay, OpeSettings(k=ENV.k))


def test_segments_and_utility_are_reported() -> None:
    table = ENV.joined_log(600, 1)
    log = candidate_log(table.append_column("group_id", table.column("request_id")), "seg")
    replay = replay_policy(log, ENV.policy("target"), "target", label="target")
    report = evaluate_policy(log, replay, OpeSettings(k=ENV.k, metrics=("click", "utility"), n_bootstrap=20,
                                                      segments=("segment",)))
    assert set(report["segments"]["segment"]) == {"new", "returning"}
    new = report["segments"]["segment"]["new"]["click"]
    assert new["requests"] == 200 and set(new["estimates"]) == {"ips", "snips", "dr"}
    utility = report["overall"]["utility"]
    assert utility["requests"] == 600 and np.isfinite(utility["estimates"]["dr"]["value"])
