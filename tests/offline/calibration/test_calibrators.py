"""Temperature, isotonic and histogram calibrators: what they fit, strict knot tables, persisted state."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression

from app.artifacts import HistogramParams, IsotonicParams, TemperatureParams
from app.offline.calibration import HistogramCalibrator, IsotonicCalibrator, TemperatureCalibrator
from app.offline.calibration.knots import pool_adjacent_violators, strict_knots
from app.serving.calibration import calibrated_logit, logit, sigmoid


def _data(n: int = 200_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(-1.0, 2.0, n)
    y = (rng.random(n) < sigmoid(z / 2.5)).astype(float)
    return z, y


def test_temperature_recovers_the_generating_temperature() -> None:
    z, y = _data()
    fitted = TemperatureCalibrator().fit(z, y)
    assert fitted.temperature_ == pytest.approx(2.5, rel=0.03)
    again = TemperatureCalibrator.from_params(TemperatureParams(temperature=fitted.temperature_))
    np.testing.assert_array_equal(again.apply(z), fitted.apply(z))


@pytest.mark.parametrize("signal", ["none", "reversed"])
def test_logits_without_signal_fit_the_largest_legal_temperature(signal: str) -> None:
    """Labels unrelated to (or against) the logits drive 1/T toward 0; the fit stops at the file's bound
    (1e6), so the calibration can be written (it used to reach T = 1e13)."""
    rng = np.random.default_rng(1)
    z = rng.normal(size=5_000)
    y = rng.integers(0, 2, z.size).astype(float) if signal == "none" else (z < 0).astype(float)
    fitted = TemperatureCalibrator().fit(z, y)
    assert fitted.temperature_ == pytest.approx(1e6)
    np.testing.assert_allclose(TemperatureCalibrator.from_params(fitted.to_params()).apply(z), 0.5, atol=1e-5)


def test_fractional_labels_give_the_same_fit_as_the_rows_they_summarise() -> None:
    z, y = _data(50_000)
    z = np.round(z, 1)  # few distinct logits, so rows can be summarised exactly
    values, inverse = np.unique(z, return_inverse=True)
    weight = np.bincount(inverse).astype(float)
    rate = np.bincount(inverse, weights=y) / weight
    rows = TemperatureCalibrator().fit(z, y)
    binned = TemperatureCalibrator().fit(values, rate, weight)
    assert binned.temperature_ == pytest.approx(rows.temperature_, rel=1e-9)


def test_pav_matches_sklearn_isotonic_regression() -> None:
    rng = np.random.default_rng(3)
    y = rng.random(300) + np.linspace(0, 1, 300)
    w = rng.uniform(0.5, 2.0, 300)
    starts, block_w, block_y = pool_adjacent_violators(y, w)
    ours = np.repeat(block_y, np.diff(np.r_[starts, y.size]))
    theirs = IsotonicRegression().fit_transform(np.arange(300), y, sample_weight=w)
    np.testing.assert_allclose(ours, theirs, atol=1e-12)
    assert np.all(np.diff(block_y) > 0)  # equal neighbours are pooled too: every step rises
    assert block_w.sum() == pytest.approx(w.sum())


@pytest.mark.parametrize("calibrator", [IsotonicCalibrator(), HistogramCalibrator(bins=15)])
def test_knot_tables_are_strictly_increasing_and_calibrated(calibrator: IsotonicCalibrator) -> None:
    z, y = _data()
    fitted = calibrator.fit(z, y)
    assert np.all(np.diff(fitted.x_) > 0) and np.all(np.diff(fitted.y_) > 0)
    assert fitted.y_[0] > 0 and fitted.y_[-1] < 1
    p = fitted.apply(z)
    assert p.sum() / y.sum() == pytest.approx(1.0, abs=0.01)
    params = fitted.to_params()
    grid = np.linspace(-30, 30, 2001)  # strictly increasing everywhere in logit space, extrapolation included
    assert np.all(np.diff(calibrated_logit(params, grid)) > 0)
    assert np.all(np.diff(fitted.apply(grid)) >= 0)
    again = type(fitted).from_params(params)  # type: ignore[arg-type]
    np.testing.assert_array_equal(again.apply(z), sigmoid(calibrated_logit(params, z)))


def test_isotonic_knots_are_the_pooled_rates() -> None:
    z = np.repeat([-2.0, -1.0, 0.0, 1.0], 1000)
    y = np.zeros_like(z)
    y[:100] = 1  # rate 0.1 at -2
    y[1000:1050] = 1  # 0.05 at -1: violates, pooled with -2 -> 0.075 at -1.5
    y[2000:2300] = 1  # 0.3 at 0
    y[3000:3600] = 1  # 0.6 at 1
    fitted = IsotonicCalibrator().fit(z, y)
    np.testing.assert_allclose(fitted.x_[1:-1], [-1.5, 0.0, 1.0])  # plus one guard knot at each end
    np.testing.assert_allclose(fitted.y_[1:-1], [0.075, 0.3, 0.6], rtol=1e-5)
    assert (fitted.x_[0], fitted.x_[-1]) == (-2.5, 2.0)
    assert isinstance(fitted.to_params(), IsotonicParams)


def test_histogram_uses_equal_mass_buckets_and_caps_them_by_positives() -> None:
    rng = np.random.default_rng(5)
    z = rng.normal(size=100_000)
    y = (rng.random(z.size) < sigmoid(z - 1)).astype(float)
    fitted = HistogramCalibrator(bins=10).fit(z, y)
    # ten buckets of 10% each: the first knot is the mean logit of the lowest decile
    lowest = np.sort(z)[:10_000]
    assert fitted.x_[1] == pytest.approx(lowest.mean(), abs=1e-3)  # x_[0] is the guard knot
    assert len(fitted.x_) == 10 + 2
    rare = (rng.random(z.size) < 0.0005).astype(float)  # ~50 positives: at most 2 buckets of >= 20
    assert len(HistogramCalibrator(bins=10).fit(z, rare).x_) <= 2 + 2
    assert isinstance(fitted.to_params(), HistogramParams)


def test_strict_knots_break_ties_and_clip_rates() -> None:
    _x, y = strict_knots(np.array([-3.0, -1.0, 2.0]), np.array([0.0, 0.0, 1.0]))
    assert np.all(np.diff(y) > 0) and y[0] > 0 and y[-1] < 1
    x1, y1 = strict_knots(np.array([0.5]), np.array([0.2]))
    assert len(x1) == 4 and y1[1] < 0.2 < y1[2]


def test_extrapolation_slopes_are_bounded_beyond_the_data() -> None:
    # neighbouring blocks 0.1 logit apart with very different rates: an end slope of ~50
    x, y = strict_knots(np.array([-3.0, -2.9, 0.0, 0.1]), np.array([0.001, 0.1, 0.2, 0.9]))
    ly = logit(np.array(y))
    slopes = np.diff(ly) / np.diff(x)
    assert 0.05 - 1e-9 <= slopes[0] <= 2.0 + 1e-9 and 0.05 - 1e-9 <= slopes[-1] <= 2.0 + 1e-9
    assert slopes[-1] == pytest.approx(2.0)
    assert slopes[1] > 40  # inside the data the table is unchanged
    p = sigmoid(calibrated_logit(IsotonicParams(x=x, y=y), np.array([1.1, 3.0])))
    assert p[1] < sigmoid(np.array([logit(np.array([0.9]))[0] + 2.0 * 2.9]))[0] + 1e-12
