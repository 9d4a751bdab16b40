from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from app.offline.tuning import TaskMatrix, mean_ndcg, ndcg, read_candidate_log


def _ragged(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gains = rng.random((40, 15))
    scores = np.round(rng.random((40, 15)), 1)  # many ties
    mask = np.ones((40, 15), dtype=bool)
    mask[::3, 9:] = False  # shorter groups
    mask[5, 2:] = False
    return gains, scores, mask


@pytest.mark.parametrize("k", [None, 1, 3, 10])
def test_ndcg_equals_sklearn_with_ties_padding_and_cutoff(k: int | None) -> None:
    gains, scores, mask = _ragged(0)
    ours = ndcg(gains, scores, mask, k)
    for g in range(len(gains)):
        keep = mask[g]
        if keep.sum() < 2:
            continue  # sklearn needs two documents
        expected = ndcg_score([gains[g, keep]], [scores[g, keep]], k=k)
        assert ours[g] == pytest.approx(expected, abs=1e-9)


def test_group_without_gain_is_undefined_and_left_out_of_the_mean() -> None:
    gains = np.array([[0.0, 0.0, 0.0], [3.0, 1.0, 0.0]])
    scores = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    mask = np.ones((2, 3), dtype=bool)
    values = ndcg(gains, scores, mask)
    assert np.isnan(values[0])
    assert mean_ndcg(gains, scores, mask) == pytest.approx(ndcg_score([gains[1]], [scores[1]]), abs=1e-12)


def test_ndcg_gaps_equal_sklearn_group_by_group(small_log_path) -> None:  # type: ignore[no-untyped-def]
    log = read_candidate_log(small_log_path, attributes=False)
    tasks = ["click", "like", "share"]
    matrix = TaskMatrix.from_log(log, tasks)
    weights = np.array([0.5, 0.3, 0.2])
    gaps = matrix.ndcg_gaps(weights)
    utility = matrix.utility(weights)
    for t in range(len(tasks)):
        without = utility - weights[t] * matrix.p[:, :, t]
        per_group = [ndcg_score([utility[g]], [without[g]]) for g in range(log.n_groups)]
        assert gaps[t] == pytest.approx(1.0 - float(np.mean(per_group)), abs=1e-9)
    assert (gaps > 0).all()
