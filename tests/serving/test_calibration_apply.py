"""Calibration apply: each method's formula, segment tables, monotonicity, and offline == service."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
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
from app.offline.calibration import METHODS, CalibrationStats, FitConfig, OfflineCalibration, fit_task
from app.offline.calibration.apply import segment_vocabularies
from app.offline.calibration.fit import Method
from app.serving.calibration import CalibrationSet, calibrated_logit, logit, sigmoid
from tests.offline.calibration.data import predictions_columns

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
    knots=st.lists(st.integers(-8000, 8000), min_size=2, max_size=8, unique=True),  # thousandths
    method=st.sampled_from(["platt", "isotonic", "histogram"]),
    z=st.lists(st.floats(-30, 30), min_size=2, max_size=50),
)
def test_apply_is_monotone_within_a_segment(
    a: float, b: float, seg_a: float, seg_b: float, knots: list[float], method: str, z: list[float]
) -> None:
    x = sorted(k / 1000 for k in knots)
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


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1), method=st.sampled_from(METHODS), rows=st.integers(200, 3000),
    base=st.floats(-6, 0), slope=st.floats(0.2, 2.0), shrinkage=st.floats(0, 100),
)
def test_fitted_calibrations_are_strictly_monotone_within_every_segment(
    seed: int, method: Method, rows: int, base: float, slope: float, shrinkage: float
) -> None:
    """Whatever the data, a fitted calibration (global + segment corrections) never ties or flips ranks."""
    rng = np.random.default_rng(seed)
    z = rng.normal(base, 1.5, rows)
    tenure = rng.choice(np.array(["new", "old"]), rows)
    y = (rng.random(rows) < sigmoid(slope * z + np.where(tenure == "new", -0.5, 0.3))).astype(float)
    y[:2] = [0.0, 1.0]  # at least one of each
    stats = CalibrationStats(tasks=("click",), segment_features=("tenure",))
    stats.add("click", z, y, np.ones(rows), stats.cell_ids({"tenure": tenure}, rows))
    task = fit_task(stats.per_task["click"], stats.cells, ("tenure",),
                    FitConfig(method=method, segments=("tenure",), shrinkage_prior=shrinkage))
    file = _calibration(task.calibrator, task.segments)
    cal = CalibrationSet(file, _manifest())
    grid = np.linspace(-25, 25, 4001)
    for code in (0, 1, 2):  # OOV, new, old
        p = cal.apply(grid[:, None], np.full((grid.size, 1), code))[:, 0]
        assert np.all(np.diff(p) >= 0)  # float64 may saturate at 0 or 1 far out, never fall
        middle = (p > 1e-12) & (p < 1 - 1e-12)
        assert np.all(np.diff(p[middle]) > 0)  # and strictly rising wherever it is representable


def _segment_calibration_for_bundle(bundle: Path) -> dict[str, Any]:
    """A global Platt + user_tenure/item_type calibration fitted for the shipped bundle."""
    from app.artifacts import load_manifest

    manifest = load_manifest(bundle)
    columns = predictions_columns(30_000, seed=11)
    rng = np.random.default_rng(11)
    for task in ("hide", "report"):
        columns[f"logit_{task}"] = rng.normal(-4.5, 1.0, 30_000)
        columns[f"label_{task}"] = (rng.random(30_000) < sigmoid(columns[f"logit_{task}"] + 0.5)).astype(np.int8)
        columns[f"mask_{task}"] = np.ones(30_000, dtype=np.int8)
    segments = ("user_tenure", "item_type")
    vocabularies = {f.name: f.vocabulary for f in manifest.features.categorical if f.name in segments}
    stats = CalibrationStats(tasks=tuple(manifest.task_names()), segment_features=segments)
    cells = stats.cell_ids({f: columns[f] for f in segments}, 30_000)
    for task in manifest.task_names():
        stats.add(task, columns[f"logit_{task}"], columns[f"label_{task}"].astype(float),
                  columns[f"mask_{task}"].astype(float), cells)
    config = FitConfig(method="isotonic", segments=segments, vocabularies=vocabularies)
    tasks = {t: fit_task(stats.per_task[t], stats.cells, segments, config) for t in manifest.task_names()}
    calibration = json.loads((bundle / "calibration" / "1.json").read_text())
    calibration["tasks"] = {t: cal.model_dump(mode="json") for t, cal in tasks.items()}
    return calibration


def test_offline_apply_equals_the_service_apply(
    store_copy: tuple[Path, Path], client_factory: Callable[..., Any], sample_request: dict[str, Any]
) -> None:
    """Scores from /v1/score (debug: raw logits) against `calibrate apply`'s code on those logits."""
    from app.artifacts import CalibrationFile, load_manifest

    store, policies = store_copy
    bundle = store / "demo_ranker" / "1"
    data = _segment_calibration_for_bundle(bundle)
    (bundle / "calibration" / "1.json").write_text(json.dumps(data))
    calibration = CalibrationFile.model_validate(data)
    manifest = load_manifest(bundle)
    offline = OfflineCalibration(calibration, manifest.task_names(), segment_vocabularies(calibration, manifest))
    client = client_factory(store=store, policies=policies)
    worst, compared = 0.0, 0
    for tenure in ("new", "casual", "regular", "power", "unseen-tenure"):
        body = copy.deepcopy(sample_request)
        body["context"]["features"]["user_tenure"] = tenure
        body["options"] = {"debug": True, "return_filtered": True}
        answer = client.post("/v1/score", json=body)
        assert answer.status_code == 200, answer.text
        features = {c["id"]: c["features"] for c in body["candidates"]}
        for row in answer.json()["candidates"]:
            logits = np.array([[row["debug"]["logits"][t] for t in manifest.task_names()]])
            codes = np.array([[offline.codes(f, [tenure if f == "user_tenure" else features[row["id"]][f]])[0]
                               for f in offline.features]])
            expected = offline.apply(logits, codes)[0]
            served = np.array([row["predictions"][t] for t in manifest.task_names()])
            worst = max(worst, float(np.max(np.abs(served - expected))))
            compared += 1
    assert compared >= 50
    assert worst <= 1e-7
    # the segment corrections did act: "new" users' click differs from the OOV (global) value
    new = calibration.tasks["click"].segments[0].values["new"]
    assert (new.a, new.b) != (1.0, 0.0)


@pytest.mark.parametrize("feature", ["user_tenure"])
def test_segment_vocabularies_come_from_the_manifest_or_the_file(feature: str) -> None:
    seg = SegmentCalibration(feature="tenure", values={"old": SegmentParams(a=1.0, b=0.1, count=5)})
    file = _calibration(PlattParams(a=1.0, b=0.0), [seg])
    assert segment_vocabularies(file) == {"tenure": ["old"]}
    assert segment_vocabularies(file, _manifest()) == {"tenure": ["new", "old"]}
    # either vocabulary gives the same outputs: a value without a correction keeps the global map
    z = np.array([[0.3], [0.3]])
    by_file = OfflineCalibration(file, ["click"], segment_vocabularies(file))
    by_manifest = OfflineCalibration(file, ["click"], segment_vocabularies(file, _manifest()))
    for value in ("new", "old", "other"):
        a = by_file.apply(z, np.array([by_file.codes("tenure", [value])] * 2))
        b = by_manifest.apply(z, np.array([by_manifest.codes("tenure", [value])] * 2))
        np.testing.assert_array_equal(a, b)
