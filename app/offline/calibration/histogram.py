"""Histogram (bucket) calibration: equal-mass bins of the logit, each bin's label rate as a knot.

Fit: sort rows by logit and cut them into `bins` buckets of equal weight (a run of equal logits is
never split, so a bucket may hold a little more). Each bucket gives one knot (weighted mean logit,
label rate). Rates of adjacent buckets that fall are pooled (weighted), and `strict_knots` makes the
table strictly increasing; the serving apply interpolates between bucket centres in logit space.
With few positives the rates are noisy, so the bucket count is capped at positives / `min_positives`
(at least 2 buckets).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from app.artifacts.calibration import HistogramParams
from app.offline.calibration.knots import pool_adjacent_violators, strict_knots
from app.serving.calibration import calibrated_logit, sigmoid

__all__ = ["HistogramCalibrator"]

Array = npt.NDArray[np.float64]


class HistogramCalibrator:
    """scikit-learn shaped: parameters in __init__, fit() -> self, fitted knot table x_, y_."""

    def __init__(self, *, bins: int = 20, min_positives: float = 20.0, min_step: float = 1e-6) -> None:
        self.bins = bins
        self.min_positives = min_positives
        self.min_step = min_step

    def fit(self, logits: Array, labels: Array, sample_weight: Array | None = None) -> HistogramCalibrator:
        """logits, labels (in [0, 1]; fractional for binned rows), sample_weight: [R]."""
        z = np.asarray(logits, dtype=np.float64)
        y = np.asarray(labels, dtype=np.float64)
        w = np.ones_like(z) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if z.shape != y.shape or z.shape != w.shape or w.sum() <= 0:
            raise ValueError("logits, labels and weights need the same length and some positive weight")
        keep = w > 0
        z, y, w = z[keep], y[keep], w[keep]
        unique_z, inverse = np.unique(z, return_inverse=True)
        inverse = inverse.reshape(-1)
        row_w = np.asarray(np.bincount(inverse, weights=w), dtype=np.float64)
        row_wy = np.bincount(inverse, weights=w * y)
        bins = int(max(2, min(self.bins, np.floor(row_wy.sum() / self.min_positives))))
        # Bucket of each distinct logit: by the cumulative weight at its middle.
        cumulative = np.cumsum(row_w) - row_w / 2
        bucket = np.minimum((cumulative / row_w.sum() * bins).astype(np.intp), bins - 1)
        bucket_w = np.asarray(np.bincount(bucket, weights=row_w, minlength=bins), dtype=np.float64)
        used = bucket_w > 0
        bucket_z = np.bincount(bucket, weights=row_w * unique_z, minlength=bins)[used] / bucket_w[used]
        bucket_y = np.bincount(bucket, weights=row_wy, minlength=bins)[used] / bucket_w[used]
        starts, block_w, block_y = pool_adjacent_violators(bucket_y, bucket_w[used])
        block_z = np.add.reduceat(bucket_z * bucket_w[used], starts) / block_w
        self.x_, self.y_ = strict_knots(block_z, block_y, min_step=self.min_step)
        return self

    def to_params(self) -> HistogramParams:
        return HistogramParams(x=self.x_, y=self.y_)

    @classmethod
    def from_params(cls, params: HistogramParams) -> HistogramCalibrator:
        fitted = cls()
        fitted.x_, fitted.y_ = list(params.x), list(params.y)
        return fitted

    def apply(self, logits: Array) -> Array:
        """Calibrated probabilities, computed by the serving code itself."""
        return sigmoid(calibrated_logit(self.to_params(), logits))
