from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.offline.tuning import ConstrainedTuner, holdout_split, read_candidate_log
from app.offline.tuning.constrained import TopKEvaluator
from app.offline.tuning.objectives import TaskMatrix

TASKS = ["click", "like", "share", "purchase", "hide"]


def test_constrained_tuner_meets_its_bound_on_held_out_groups(small_log_path: Path) -> None:
    log = read_candidate_log(small_log_path, attributes=False)
    train, _ = holdout_split(log, 0.3)
    part = log.subset(train)
    evaluate = TopKEvaluator(part, TaskMatrix.from_log(part, TASKS, {"hide"}), primary="purchase", labels=False,
                             k=10, bounded=["hide"])
    purchase_only = evaluate(np.eye(len(TASKS))[3])
    hide_only = evaluate(np.eye(len(TASKS))[4])
    # a bound between what ranking by purchase alone and by hide alone give: it must bind
    bound = float(hide_only.outcomes[0] + 0.4 * (purchase_only.outcomes[0] - hide_only.outcomes[0]))
    tuner = ConstrainedTuner(tasks=TASKS, negative={"hide"}, primary="purchase", labels=False,
                             bounds={"hide": bound}, k=10).fit(log)
    assert tuner.feasible_train_ and tuner.feasible_holdout_
    assert tuner.outcomes_holdout_["hide"] <= bound
    assert tuner.outcomes_train_["hide"] <= bound
    # better for purchase than giving up and ranking by hide alone; it pays for the bound
    assert tuner.primary_train_ > hide_only.primary + 0.05
    assert tuner.primary_train_ < purchase_only.primary
    assert tuner.weights_["hide"] > 0.05
    data = tuner.to_dict()
    assert data["feasible"] == {"train": True, "holdout": True}
    assert data["groups"]["train"] + data["groups"]["holdout"] == log.n_groups


def test_holdout_split_depends_on_the_ids_only(small_log_path: Path) -> None:
    log = read_candidate_log(small_log_path, attributes=False)
    train, held = holdout_split(log, 0.3)
    assert len(set(train) & set(held)) == 0 and len(train) + len(held) == log.n_groups
    assert 0.2 < len(held) / log.n_groups < 0.4
    reversed_log = log.subset(np.arange(log.n_groups)[::-1])
    _, held_again = holdout_split(reversed_log, 0.3)
    assert sorted(reversed_log.group_ids[held_again].tolist()) == sorted(log.group_ids[held].tolist())


def test_unknown_primary_or_bad_bound_is_refused(small_log_path: Path) -> None:
    log = read_candidate_log(small_log_path, attributes=False)
    with pytest.raises(ValueError, match="primary"):
        ConstrainedTuner(tasks=["click"], primary="purchase", bounds={"hide": 0.1}).fit(log)
    with pytest.raises(ValueError, match="LIMIT > 0"):
        ConstrainedTuner(tasks=TASKS, primary="purchase", bounds={"hide": 0.0}).fit(log)
