"""The acceptance computation, chunked and from binned sums, equals the one-shot one on the same rows."""

from __future__ import annotations

import numpy as np
import pytest

from app.artifacts import load_manifest
from app.offline.calibration import CalibrationStats, FitConfig, fit_task
from app.offline.calibration.acceptance import AcceptanceConfig, run_acceptance, score_chunks
from app.offline.metrics import calibration_ratio, field_rce
from app.offline.synthetic import generator as syn
from app.serving.calibration import CalibrationSet
from tests.conftest import BUNDLE


def test_chunked_acceptance_equals_the_one_shot_computation_on_the_same_rows() -> None:
    config = AcceptanceConfig(rows=60_000, chunk_rows=20_000, seed=3, show_progress=False)
    result = run_acceptance(BUNDLE, config)
    manifest = load_manifest(BUNDLE)
    chunks = list(score_chunks(BUNDLE, manifest, config))
    assert len(chunks) == 3 and result.rows == 60_000 == result.fit_rows + result.held_out_rows

    # One shot: every row at once, cells from the segment strings (run_acceptance uses the model's codes).
    logits = np.concatenate([c.logits for c in chunks])
    codes = np.concatenate([c.categorical for c in chunks])
    labels = np.concatenate([c.log.labels for c in chunks])
    mask = np.concatenate([c.log.mask for c in chunks])
    hours = np.concatenate([c.log.event_hours for c in chunks])
    values = {f: np.concatenate([c.log.categorical[f] for c in chunks]) for f in syn.SEGMENTS}
    assert hours.min() >= 21 * 24 and hours.max() < 28 * 24
    fit, held = hours < 25 * 24, hours >= 25 * 24
    assert (int(fit.sum()), int(held.sum())) == (result.fit_rows, result.held_out_rows)

    tasks = tuple(manifest.task_names())
    stats = CalibrationStats(tasks=tasks, segment_features=tuple(syn.SEGMENTS))
    cells = stats.cell_ids({f: v[fit] for f, v in values.items()}, int(fit.sum()))
    for t, task in enumerate(tasks):
        stats.add(task, logits[fit, t], labels[fit, t], mask[fit, t], cells)
    vocabularies = {f.name: f.vocabulary for f in manifest.features.categorical if f.name in syn.SEGMENTS}
    fit_config = FitConfig(method="platt", segments=tuple(syn.SEGMENTS), vocabularies=vocabularies)
    calibrated = CalibrationSet(result.calibration, manifest).apply(logits[held], codes[held])
    for t, task in enumerate(tasks):
        one_shot = fit_task(stats.per_task[task], stats.cells, stats.segment_features, fit_config)
        chunked = result.calibration.tasks[task]
        assert chunked.calibrator.a == pytest.approx(one_shot.calibrator.a, rel=1e-9)  # type: ignore[union-attr]
        assert chunked.calibrator.b == pytest.approx(one_shot.calibrator.b, rel=1e-9)  # type: ignore[union-attr]
        for mine, theirs in zip(chunked.segments, one_shot.segments, strict=True):
            assert mine.feature == theirs.feature and mine.values.keys() == theirs.values.keys()
            for value, params in mine.values.items():
                assert (params.a, params.b) == pytest.approx((theirs.values[value].a, theirs.values[value].b),
                                                             rel=1e-9, abs=1e-12)

        observed = mask[held, t] > 0
        y, raw, p = labels[held, t][observed], logits[held, t][observed], calibrated[observed, t]
        metrics = result.metrics[task]
        assert (metrics.count, metrics.positives) == (observed.sum(), y.sum())
        # Binned sums take each bin's rows at its mean logit: off at second order (see binned_metrics).
        assert metrics.ratio_before == pytest.approx(calibration_ratio(1 / (1 + np.exp(-raw)), y), rel=3e-5)
        assert metrics.ratio_after == pytest.approx(calibration_ratio(p, y), rel=3e-5)
        for feature in syn.SEGMENTS:
            value = values[feature][held][observed]
            assert metrics.field_rce_before[feature] == pytest.approx(
                field_rce(1 / (1 + np.exp(-raw)), y, value), rel=1e-4, abs=1e-5)
            assert metrics.field_rce_after[feature] == pytest.approx(field_rce(p, y, value), rel=1e-4, abs=1e-5)

