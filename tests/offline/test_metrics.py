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


def test_equal_width_ece_matches_calibration_curve(data: tuple[np.ndarray, np.ndarray]) -> None:
    p, y = data
    for bins in (5, 10, 15):
        true, predicted = calibration_curve(y, p, n_bins=bins, strategy="uniform")
        # calibration_curve drops empty bins; weights are the bin counts, with sklearn's own bin rule
        edges = np.linspace(0.0, 1.0, bins + 1)
        counts = np.bincount(np.searchsorted(edges[1:-1], p), minlength=bins)
        weights = counts[counts > 0] / p.size
        expected = float(np.sum(weights * np.abs(true - predicted)))
        assert metrics.ece_equal_width(p, y, bins=bins) == pytest.approx(expected, abs=1e-9)


def test_equal_mass_ece_with_unequal_bins_matches_a_direct_loop(data: tuple[np.ndarray, np.ndarray]) -> None:
    p, y = data
    p, y = p[:4999], y[:4999]  # 4999 rows: bins of 500 and 499
    order = np.argsort(p)
    expected = 0.0
    start = 0
    for size in [500] * 9 + [499]:
        chunk = order[start:start + size]
        expected += size / 4999 * abs(p[chunk].mean() - y[chunk].mean())
        start += size
    assert metrics.ece_equal_mass(p, y, bins=10) == pytest.approx(expected, abs=1e-12)


def test_field_rce_is_the_positive_weighted_relative_error_per_value() -> None:
    rng = np.random.default_rng(1)
    values = rng.choice(np.array(["a", "b", "c"]), 3000)
    y = (rng.random(3000) < 0.1).astype(float)
    p = np.where(values == "a", 0.2, 0.1)  # a over-predicted, b and c about right
    expected = 0.0
    for v in ("a", "b", "c"):
        sel = values == v
        rce_v = abs(p[sel].sum() - y[sel].sum()) / y[sel].sum()
        expected += y[sel].sum() / y.sum() * rce_v
    assert metrics.field_rce(p, y, values) == pytest.approx(expected, abs=1e-12)
    # globally calibrated but wrong per value: ratio 1, Field-RCE > 0
    q = np.where(values == "a", 0.15, 0.05)
    q = q * y.sum() / q.sum()
    assert metrics.calibration_ratio(q, y) == pytest.approx(1.0)
    assert metrics.field_rce(q, y, values) > 0.1
    assert metrics.field_rce(y, y, values) == 0.0
