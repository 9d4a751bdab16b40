"""Platt scaling recovers known parameters and applies exactly as the service does."""

from __future__ import annotations

import numpy as np
import pytest

from app.offline.calibration import PlattCalibrator
from app.serving.calibration import calibrated_logit, sigmoid


def test_recovers_the_generating_parameters() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(-2.0, 1.5, 400_000)
    y = (rng.random(z.size) < sigmoid(0.6 * z - 0.8)).astype(float)
    platt = PlattCalibrator().fit(z, y)
    assert platt.a_ == pytest.approx(0.6, abs=0.02) and platt.b_ == pytest.approx(-0.8, abs=0.03)
    assert platt.apply(z).sum() / y.sum() == pytest.approx(1.0, abs=0.01)


def test_masked_rows_do_not_count() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(0, 1, 20_000)
    y = (rng.random(z.size) < sigmoid(z)).astype(float)
    weights = np.ones_like(z)
    weights[:5000] = 0
    scrambled = y.copy()
    scrambled[:5000] = 1 - scrambled[:5000]
    a = PlattCalibrator().fit(z, y, weights)
    b = PlattCalibrator().fit(z, scrambled, weights)
    assert (a.a_, a.b_) == (b.a_, b.b_)


def test_a_task_without_positives_still_gets_an_order_preserving_fit() -> None:
    z = np.linspace(-8, -4, 2000)
    platt = PlattCalibrator().fit(z, np.zeros_like(z))
    assert platt.a_ > 0 and np.all(np.diff(platt.apply(z)) > 0)
    assert platt.apply(z).mean() < 0.01


def test_offline_apply_is_the_serving_apply() -> None:
    z = np.random.default_rng(2).normal(size=1000)
    platt = PlattCalibrator().fit(z, (z > 0).astype(float))
    np.testing.assert_array_equal(platt.apply(z), sigmoid(calibrated_logit(platt.to_params(), z)))


def test_sparse_positives_in_the_tail_converge_to_a_positive_slope() -> None:
    # Found by hypothesis: a few positives among the highest logits made the undamped Newton step diverge.
    rng = np.random.default_rng(11)
    z = np.sort(rng.uniform(-10, -1.6, 300))
    y = np.zeros_like(z)
    y[[-1, -7, -12]] = 1.0
    platt = PlattCalibrator().fit(z, y)
    assert platt.a_ > 0
    assert np.all(np.diff(platt.apply(z)) > 0)


def test_data_without_signal_keeps_the_slope_at_its_floor_and_fits_the_base_rate() -> None:
    # Found by hypothesis: a single positive at a low logit makes the unconstrained slope negative.
    rng = np.random.default_rng(188)
    z = rng.normal(-5.0, 1.5, 200)
    y = np.zeros_like(z)
    y[np.argmin(z)] = 1.0
    platt = PlattCalibrator().fit(z, y)
    assert platt.a_ == pytest.approx(1e-3)
    assert np.all(np.diff(platt.apply(np.sort(z))) > 0)  # still order-preserving
    smoothed_rate = (2 / 3 + 199 / 201) / 200  # the smoothed targets' mean: (N+ + 1)/(N+ + 2), 1/(N- + 2)
    assert platt.apply(z).mean() == pytest.approx(smoothed_rate, rel=0.02)
