"""Calibration apply: each method's formula, segment tables, and monotonicity."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from app.artifacts import (
    CalibrationFile,
    CategoricalFeature,
    FeatureSchema,
    FittedFor,
    HistogramParams,
    IsotonicParams,
    ModelManifest,
    NumericFeature,
    PlattParams,
    ReferenceDistribution,
    SegmentCalibration,
    SegmentParams,
    TaskCalibration,
    TaskSpec,
    TemperatureParams,
    TrainingWindow,
)
from app.serving.calibration import CalibrationSet, calibrated_logit, logit, sigmoid

SHA = "a" * 64


def _manifest() -> ModelManifest:
    return ModelManifest(
        schema_version=1, name="m", version="1", tasks=[TaskSpec(name="click", polarity="positive")],
        features=FeatureSchema(
            numeric=[NumericFeature(name="x")],
            categorical=[CategoricalFeature(name="tenure", vocabulary=["new", "old"])],
        ),
        model_sha256=SHA,
        training_window=TrainingWindow(start="2026-01-01T00:00:00Z", end="2026-01-02T00:00:00Z"),
        created_at="2026-01-02T00:00:00Z", code_version="test",
    )


def _calibration(params: object, segments: list[SegmentCalibration] | None = None) -> CalibrationFile:
    return CalibrationFile(
        schema_version=1, version="1", model=FittedFor(name="m", version="1", sha256=SHA),
        created_at="2026-01-02T00:00:00Z",
        tasks={"click": TaskCalibration(
            calibrator=params, segments=segments or [], bucket_edges=[0.5],
            reference=ReferenceDistribution(fractions=[0.5, 0.5]),
        )},
    )


def test_platt_and_temperature_formulas() -> None:
    z = np.array([-3.0, 0.0, 2.0])
    np.testing.assert_allclose(calibrated_logit(PlattParams(a=0.5, b=-1.0), z), 0.5 * z - 1.0)
    np.testing.assert_allclose(calibrated_logit(TemperatureParams(temperature=2.0), z), z / 2.0)
    np.testing.assert_allclose(sigmoid(np.array([0.0, 40.0, -40.0])), [0.5, 1.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(sigmoid(logit(np.array([0.01, 0.3, 0.99]))), [0.01, 0.3, 0.99])


def test_knot_tables_interpolate_in_logit_space_and_extrapolate_strictly() -> None:
    params = IsotonicParams(x=[-2.0, 0.0, 2.0], y=[0.1, 0.5, 0.8])
    p = sigmoid(calibrated_logit(params, np.array([-2.0, -1.0, 0.0, 2.0])))
    np.testing.assert_allclose(p[[0, 2, 3]], [0.1, 0.5, 0.8])
    np.testing.assert_allclose(logit(p[1:2]), (logit(np.array([0.1])) + 0.0) / 2)
    # Beyond the end knots the map keeps rising, so no two candidates tie there.
    far = sigmoid(calibrated_logit(params, np.array([-9.0, -8.0, 8.0, 9.0])))
    assert far[0] < far[1] < 0.1 and 0.8 < far[2] < far[3] < 1.0


def test_segment_correction_applies_per_value_and_oov_keeps_global() -> None:
    seg = SegmentCalibration(feature="tenure", values={"new": SegmentParams(a=2.0, b=-1.0, count=100)})
    cal = CalibrationSet(_calibration(PlattParams(a=1.0, b=0.5), [seg]), _manifest())
    logits = np.array([[0.3], [0.3], [0.3]], dtype=np.float32)
    categorical = np.array([[1], [2], [0]])  # new, old, OOV
    p = cal.apply(logits, categorical)[:, 0]
    base = float(logits[0, 0]) + 0.5
    np.testing.assert_allclose(p, sigmoid(np.array([2.0 * base - 1.0, base, base])))


@settings(max_examples=60, deadline=None)
@given(
    a=st.floats(0.05, 5), b=st.floats(-5, 5), seg_a=st.floats(0.05, 5), seg_b=st.floats(-5, 5),
    knots=st.lists(st.floats(-8, 8), min_size=2, max_size=8, unique=True),
    method=st.sampled_from(["platt", "isotonic", "histogram"]),
    z=st.lists(st.floats(-30, 30), min_size=2, max_size=50),
)
def test_apply_is_monotone_within_a_segment(
    a: float, b: float, seg_a: float, seg_b: float, knots: list[float], method: str, z: list[float]
) -> None:
    x = sorted(knots)
    y = list(np.linspace(0.02, 0.9, len(x)))
    params: object = {"platt": PlattParams(a=a, b=b), "isotonic": IsotonicParams(x=x, y=y),
                      "histogram": HistogramParams(x=x, y=y)}[method]
    seg = SegmentCalibration(feature="tenure", values={"new": SegmentParams(a=seg_a, b=seg_b, count=10)})
    cal = CalibrationSet(_calibration(params, [seg]), _manifest())
    logits = np.sort(np.array(z, dtype=np.float32))[:, None]
    for code in (0, 1, 2):
        p = cal.apply(logits, np.full((len(z), 1), code))[:, 0]
        assert np.all(np.diff(p) >= 0)
        assert np.all((p >= 0) & (p <= 1))
