from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from app.offline.tuning import NdcgGapTuner, RegretTuner, TaskMatrix, read_candidate_log
from app.offline.tuning.objectives import task_gains
from app.offline.tuning.targeting import check_targets

TASKS = ["click", "like", "share", "hide"]


def test_ndcg_gap_tuner_reaches_targets_far_from_the_start(small_log_path: Path) -> None:
    log = read_candidate_log(small_log_path, attributes=False)
    targets = {"click": 0.1, "like": 0.5, "share": 0.15, "hide": 0.25}
    tuner = NdcgGapTuner(targets=targets, negative={"hide"}).fit(log)
    assert tuner.error_ <= 0.02
    assert sum(abs(tuner.achieved_[t] - targets[t]) for t in targets) == pytest.approx(tuner.error_)
    weights = np.array([tuner.weights_[t] for t in TASKS])
    assert (weights >= 0).all() and weights.sum() == pytest.approx(1.0)
    # the achieved gaps are what sklearn measures for these weights
    matrix = TaskMatrix.from_log(log, TASKS, {"hide"})
    utility = matrix.utility(weights)
    gains = matrix.utility_gains(utility)
    without = utility - weights[1] * matrix.p[:, :, 1]
    per_group = [ndcg_score([gains[g]], [without[g]]) for g in range(log.n_groups)]
    assert tuner.values_["like"] == pytest.approx(1.0 - float(np.mean(per_group)), abs=1e-9)
    assert tuner.to_dict()["signed_weights"]["hide"] == -tuner.weights_["hide"]


@pytest.mark.parametrize("labels", [False, True])
def test_regret_tuner_reaches_reachable_targets(small_log_path: Path, labels: bool) -> None:
    log = read_candidate_log(small_log_path, attributes=False)
    matrix = TaskMatrix.from_log(log, TASKS, {"hide"})
    gains = task_gains(log, matrix, labels=labels)
    hidden = np.array([0.1, 0.2, 0.3, 0.4])  # weights the tuner does not see; their regret split is reachable
    regrets = matrix.regrets(hidden, gains, matrix.ideal_dcgs(gains))
    targets = dict(zip(TASKS, regrets / regrets.sum(), strict=True))
    tuner = RegretTuner(targets=targets, negative={"hide"}, labels=labels).fit(log)
    assert tuner.error_ <= 0.02
    assert tuner.to_dict()["gains"] == ("labels" if labels else "predictions")


def test_unreached_targets_come_with_the_fractions_each_task_alone_gives(small_log_path: Path) -> None:
    log = read_candidate_log(small_log_path, attributes=False)
    targets = {"click": 0.05, "like": 0.05, "share": 0.05, "hide": 0.85}  # hide's regret cannot dominate so
    tuner = RegretTuner(targets=targets, negative={"hide"}, max_iter=3, newton_iter=1, polish_maxfev=10).fit(log)
    assert tuner.error_ > 0.02
    matrix = TaskMatrix.from_log(log, TASKS, {"hide"})
    gains = task_gains(log, matrix, labels=False)
    ideal = matrix.ideal_dcgs(gains)
    seen = tuner.to_dict()["fractions_seen"]
    for t in range(len(TASKS)):
        regrets = matrix.regrets(np.eye(len(TASKS))[t], gains, ideal)
        alone = regrets / regrets.sum()  # the split when ranking by this task alone
        for s, name in enumerate(TASKS):
            assert seen[name][0] - 1e-12 <= alone[s] <= seen[name][1] + 1e-12
    assert seen["hide"][1] < targets["hide"]  # the range shows the target is out of reach
    for task, (low, high) in seen.items():
        assert low <= tuner.achieved_[task] <= high


def test_regret_grows_when_a_task_loses_weight(small_log_path: Path) -> None:
    log = read_candidate_log(small_log_path, attributes=False)
    matrix = TaskMatrix.from_log(log, TASKS, {"hide"})
    gains = task_gains(log, matrix, labels=False)
    ideal = matrix.ideal_dcgs(gains)
    even = matrix.regrets(np.full(4, 0.25), gains, ideal)
    clicky = matrix.regrets(np.array([0.7, 0.1, 0.1, 0.1]), gains, ideal)
    assert clicky[0] < even[0] and clicky[3] > even[3]


@pytest.mark.parametrize(
    ("targets", "needle"),
    [({"click": 1.0}, "at least two"), ({"click": 0.5, "like": 0.0}, "> 0"), ({"click": 0.5, "like": 0.3}, "sum to 1")],
)
def test_bad_targets_are_refused(targets: dict[str, float], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        check_targets(targets)


def test_label_regret_is_ndcg_on_the_judged_candidates_only(small_log_path: Path) -> None:
    """Missing is not negative: an unobserved label leaves the candidate out (sklearn on the rest)."""
    log = read_candidate_log(small_log_path, attributes=False)
    matrix = TaskMatrix.from_log(log, ["click", "like"])
    gains = task_gains(log, matrix, labels=True)
    assert not gains.judged_everywhere
    weights = np.array([0.6, 0.4])
    regrets = matrix.regrets(weights, gains, matrix.ideal_dcgs(gains))
    utility = matrix.utility(weights)
    labels = log.labels[:, :, log.task_index("click")]
    per_group = []
    for g in range(log.n_groups):
        judged = log.mask[g] & np.isfinite(labels[g])
        if labels[g, judged].sum() > 0:
            per_group.append(ndcg_score([labels[g, judged]], [utility[g, judged]]))
    assert regrets[0] == pytest.approx(1.0 - float(np.mean(per_group)), abs=1e-9)
