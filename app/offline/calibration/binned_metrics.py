"""Calibration ratio and Field-RCE, raw and calibrated, from binned sufficient statistics.

A held-out split accumulated as `CalibrationStats` (per task x segment cell x fine logit bin: the
weight, the label sum and the logit sum) holds every sum these two metrics need: each non-empty
(cell, bin) stands for its weight w of rows at the bin's mean logit z̄, so its prediction sum is
w·sigmoid(z̄) raw and w·apply(z̄, cell) calibrated (the service's apply, as in `calibrate fit`), and
its label sum is exact. Taking z̄ for every row of the bin errs only at second order in the spread of
the logits within the bin (the first-order terms cancel around the mean): at most w·max|p''|·h²/2
for bin width h, i.e. a relative error below h²/2 ≈ 3e-5 of a bin's Σp for the default grid
(h = 32/4096 logit), times the calibrated slope squared after calibration. The two end bins also
take every logit beyond the grid (|z| > 16), where this bound does not hold.

Sums of sums are sums, so the statistics of a held-out stream of any length, summed chunk by chunk
or by any engine, give these metrics without keeping a row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.artifacts.calibration import CalibrationFile
from app.offline.calibration.apply import OfflineCalibration
from app.offline.calibration.stats import CalibrationStats
from app.serving.calibration import sigmoid

__all__ = ["BinnedMetrics", "binned_metrics", "cell_value_ids", "cell_vocabulary_codes"]

Array = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class BinnedMetrics:
    """One task's observed rows and positives, calibration ratio and Field-RCE (feature -> value)."""

    count: float
    positives: float
    ratio_before: float
    ratio_after: float
    field_rce_before: dict[str, float]
    field_rce_after: dict[str, float]


def cell_vocabulary_codes(stats: CalibrationStats, applier: OfflineCalibration) -> npt.NDArray[np.int64]:
    """Vocabulary code of every (cell, applier feature): [cells, F]; 0 for unknown values and null."""
    codes = np.zeros((len(stats.cells), len(applier.features)), dtype=np.int64)
    for j, feature in enumerate(applier.features):
        codes[:, j] = applier.codes(feature, stats.cell_values(feature))
    return codes


def cell_value_ids(stats: CalibrationStats) -> npt.NDArray[np.int64]:
    """Index of every (cell, segment feature)'s value among that feature's values: [cells, F].

    Field-RCE groups rows by their value, known to the model or not, so it uses these, not the codes.
    """
    ids = np.zeros((len(stats.cells), len(stats.segment_features)), dtype=np.int64)
    for j, feature in enumerate(stats.segment_features):
        _, inverse = np.unique(np.array(stats.cell_values(feature), dtype=str), return_inverse=True)
        ids[:, j] = inverse.reshape(-1)
    return ids


def binned_metrics(
    stats: CalibrationStats, calibration: CalibrationFile, vocabularies: Mapping[str, Sequence[str]]
) -> dict[str, BinnedMetrics]:
    """Per task of `stats`: metrics of sigmoid(raw logit) and of `calibration` applied.

    vocabularies: segment feature -> the model's vocabulary (as for `OfflineCalibration`); every
    feature of the calibration's segment corrections must be a segment feature of `stats`.
    """
    tasks = list(stats.tasks)
    applier = OfflineCalibration(calibration, tasks, vocabularies)
    cell_codes = cell_vocabulary_codes(stats, applier)
    value_ids = cell_value_ids(stats)
    out: dict[str, BinnedMetrics] = {}
    for t, task in enumerate(tasks):
        rows = stats.per_task[task].rows()
        logits = np.zeros((rows.z.size, len(tasks)))
        logits[:, t] = rows.z
        p_before = sigmoid(rows.z)
        p_after = applier.apply(logits, cell_codes[rows.cell])[:, t]
        labels = rows.w * rows.y  # the bin's label sum
        out[task] = BinnedMetrics(
            count=rows.total, positives=float(labels.sum()),
            ratio_before=_ratio(rows.w * p_before, labels), ratio_after=_ratio(rows.w * p_after, labels),
            field_rce_before={f: _field_rce(rows.w * p_before, labels, value_ids[rows.cell, j])
                              for j, f in enumerate(stats.segment_features)},
            field_rce_after={f: _field_rce(rows.w * p_after, labels, value_ids[rows.cell, j])
                             for j, f in enumerate(stats.segment_features)},
        )
    return out


def _ratio(predicted: Array, labels: Array) -> float:
    positives = float(labels.sum())
    return float(predicted.sum()) / positives if positives > 0 else float("nan")


def _field_rce(predicted: Array, labels: Array, values: npt.NDArray[np.int64]) -> float:
    """Σ_v |Σp − Σy| / Σy over a feature's values; predicted, labels: per-bin sums [K], values [K]."""
    positives = float(labels.sum())
    if positives <= 0:
        return float("nan")
    gap = np.bincount(values, weights=predicted) - np.bincount(values, weights=labels)
    return float(np.abs(gap).sum()) / positives
