"""Fit one task's calibration from its sufficient statistics: global calibrator, segments, drift buckets.

1. The global calibrator is fitted on the bins summed over all segment cells (`TaskStats.pooled`).
2. Each declared segment feature, in order, gets per-value affine corrections fitted on the
   (cell, bin) rows at their current calibrated logit (`app.offline.calibration.segments`).
3. The drift bucket edges are the equal-mass deciles of the final calibrated probability of the
   fit rows, and the reference distribution is their weight share per bucket.
Only the small per-bin tables are touched here, never the raw rows: this is the "driver" step
that stays the same whichever engine computed the statistics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from app.artifacts.calibration import (
    CalibratorParams,
    ReferenceDistribution,
    SegmentCalibration,
    TaskCalibration,
)
from app.offline.calibration.drift import drift_edges, reference_fractions
from app.offline.calibration.histogram import HistogramCalibrator
from app.offline.calibration.isotonic import IsotonicCalibrator
from app.offline.calibration.platt import PlattCalibrator
from app.offline.calibration.segments import fit_segment_correction
from app.offline.calibration.stats import Cell, TaskStats
from app.offline.calibration.temperature import TemperatureCalibrator
from app.serving.calibration import calibrated_logit, sigmoid

__all__ = ["METHODS", "FitConfig", "Method", "fit_task", "make_calibrator"]

Array = npt.NDArray[np.float64]
Method = Literal["platt", "temperature", "isotonic", "histogram"]
METHODS: tuple[Method, ...] = ("platt", "temperature", "isotonic", "histogram")


class _Calibrator(Protocol):
    def fit(self, logits: Array, labels: Array, sample_weight: Array | None = None) -> _Calibrator: ...
    def to_params(self) -> CalibratorParams: ...


@dataclass(frozen=True, slots=True)
class FitConfig:
    """How to fit: the global method, segment features in application order, shrinkage, drift buckets.

    `vocabularies` (feature -> values), when given, limits segment corrections to those values (the
    model's vocabulary: any other value is out of vocabulary at serving time and keeps the global fit).
    """

    method: Method = "platt"
    segments: tuple[str, ...] = ()
    shrinkage_prior: float = 30.0
    drift_buckets: int = 10
    vocabularies: Mapping[str, Sequence[str]] | None = None


def make_calibrator(method: Method) -> _Calibrator:
    calibrators: dict[str, type[_Calibrator]] = {
        "platt": PlattCalibrator, "temperature": TemperatureCalibrator,
        "isotonic": IsotonicCalibrator, "histogram": HistogramCalibrator,
    }
    return calibrators[method]()


def fit_task(stats: TaskStats, cells: list[Cell], features: tuple[str, ...], config: FitConfig) -> TaskCalibration:
    """stats: one task's sums; cells[i]: the values of `features` in cell i. Metrics are left empty."""
    pooled = stats.pooled()
    if pooled.total <= 0:
        raise ValueError("no observed rows to fit on")
    params = make_calibrator(config.method).fit(pooled.z, pooled.y, pooled.w).to_params()
    rows = stats.rows()
    z = calibrated_logit(params, rows.z)
    segments: list[SegmentCalibration] = []
    for feature in config.segments:
        j = features.index(feature)
        per_cell = np.array([cell[j] for cell in cells], dtype=str)
        values = per_cell[rows.cell]
        allowed = None if config.vocabularies is None else set(config.vocabularies[feature])
        segment = fit_segment_correction(
            feature, values, z, rows.y, rows.w, shrinkage_prior=config.shrinkage_prior, allowed=allowed
        )
        a = np.ones(len(cells))
        b = np.zeros(len(cells))
        for i, value in enumerate(per_cell.tolist()):
            if value in segment.values:
                a[i], b[i] = segment.values[value].a, segment.values[value].b
        z = a[rows.cell] * z + b[rows.cell]  # the same affine step as the serving apply
        segments.append(segment)
    calibrated = sigmoid(z)
    edges = drift_edges(calibrated, config.drift_buckets, weights=rows.w)
    return TaskCalibration(
        calibrator=params, segments=segments, bucket_edges=edges,
        reference=ReferenceDistribution(fractions=reference_fractions(calibrated, edges, weights=rows.w)),
    )
