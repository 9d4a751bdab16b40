from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.offline.tuning import ConstrainedTuner, holdout_split, read_candidate_log
from app.offline.tuning.constrained import TopKEvaluator, bound_room
from app.offline.tuning.frontier import frontier_markdown, sweep_bounds, sweep_frontier
from app.offline.tuning.objectives import TaskMatrix

TASKS = ["purchase", "hide"]


def _tuner(bound: float) -> ConstrainedTuner:
    return ConstrainedTuner(tasks=TASKS, negative={"hide"}, primary="purchase", labels=False,
                            bounds={"hide": bound}, k=10)


def test_sweep_spans_bounds_the_tuner_can_meet_with_its_room(uneven_log_path: Path) -> None:
    log = read_candidate_log(uneven_log_path, attributes=False)
    train, held = holdout_split(log, 0.3)
    part = log.subset(train)
    evaluate = TopKEvaluator(part, TaskMatrix.from_log(part, TASKS, {"hide"}), primary="purchase", labels=False,
                             k=10, bounded=["hide"])
    hide_alone, purchase_alone = evaluate(np.array([0.0, 1.0])), evaluate(np.array([1.0, 0.0]))
    room = bound_room(2.0, len(train), len(held)) * hide_alone.stderr[0]
    # the situation this guards: the room is wider than the trade-off itself
    assert room > purchase_alone.outcomes[0] - hide_alone.outcomes[0]

    bounds = sweep_bounds(log, _tuner(1.0), 3)
    assert min(bounds) > hide_alone.outcomes[0] + room  # tighter bounds cannot be met with the room
    points = sweep_frontier(log, _tuner, bounds)
    assert all(p.feasible_train for p in points)
    # a real frontier: looser bounds buy purchase NDCG, and the tightest still beats ranking by hide alone
    primaries = [p.primary_train for p in points]
    assert primaries == sorted(primaries)
    assert primaries[0] > hide_alone.primary + 0.02
    assert primaries[-1] > primaries[0] + 0.02
    assert "| fit met bound + room |" in frontier_markdown(points, "purchase", "hide", 10)


def test_an_unreachable_bound_says_so_and_returns_the_least_violating_weights(uneven_log_path: Path) -> None:
    log = read_candidate_log(uneven_log_path, attributes=False)
    train, _ = holdout_split(log, 0.3)
    part = log.subset(train)
    evaluate = TopKEvaluator(part, TaskMatrix.from_log(part, TASKS, {"hide"}), primary="purchase", labels=False,
                             k=10, bounded=["hide"])
    hide_alone = evaluate(np.array([0.0, 1.0]))
    tuner = _tuner(float(hide_alone.outcomes[0]) * 1.01).fit(log)  # met on train without room, not with it
    assert not tuner.feasible_train_
    assert tuner.weights_["hide"] > 0.9
    assert tuner.to_dict()["room"]["hide"] == pytest.approx(tuner.room_["hide"])
    assert tuner.outcomes_train_["hide"] + tuner.room_["hide"] > tuner.bounds["hide"]
