"""Offline metrics against scikit-learn's independent implementations."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from app.offline import metrics


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    p = rng.beta(1, 20, 5000)
    y = (rng.random(5000) < p * 1.2).astype(float)
    return p, y


def test_auc_logloss_brier_match_sklearn(data: tuple[np.ndarray, np.ndarray]) -> None:
    p, y = data
    assert metrics.auc(p, y) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert metrics.logloss(p, y) == pytest.approx(log_loss(y, p), abs=1e-12)
    assert metrics.brier(p, y) == pytest.approx(brier_score_loss(y, p), abs=1e-12)


def test_auc_counts_ties_as_half() -> None:
    p = np.array([0.5, 0.5, 0.5, 0.1])
    y = np.array([1.0, 0.0, 0.0, 0.0])
    assert metrics.auc(p, y) == pytest.approx(roc_auc_score(y, p), abs=1e-12)


def test_equal_mass_ece_matches_calibration_curve(data: tuple[np.ndarray, np.ndarray]) -> None:
    p, y = data
    p = p + np.arange(p.size) * 1e-12  # distinct values, so quantile bins have equal sizes
    true, predicted = calibration_curve(y, p, n_bins=10, strategy="quantile")
    assert metrics.ece_equal_mass(p, y, bins=10) == pytest.approx(np.mean(np.abs(true - predicted)), abs=1e-9)


def test_ratio_and_normalised_entropy(data: tuple[np.ndarray, np.ndarray]) -> None:
    p, y = data
    assert metrics.calibration_ratio(p, y) == pytest.approx(p.sum() / y.sum())
    base = np.full_like(p, y.mean())
    assert metrics.normalised_entropy(base, y) == pytest.approx(1.0)
    assert metrics.normalised_entropy(p, y) < 1.0
