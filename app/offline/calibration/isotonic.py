"""Isotonic calibration: the weighted isotonic regression of the label on the logit, as a knot table.

Fit: sort rows by logit, pool adjacent violators (equal neighbours too, so every step rises), and
place one knot per pooled block at (weighted mean logit of the block, block label rate). The
serving apply interpolates between knots linearly in logit(y) and extrapolates with the end slopes;
`strict_knots` makes the table strictly increasing (see `app.offline.calibration.knots`).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from app.artifacts.calibration import IsotonicParams
from app.offline.calibration.knots import pool_adjacent_violators, strict_knots
from app.serving.calibration import calibrated_logit, sigmoid

__all__ = ["IsotonicCalibrator"]

Array = npt.NDArray[np.float64]


class IsotonicCalibrator:
    """scikit-learn shaped: parameters in __init__, fit() -> self, fitted knot table x_, y_."""

    def __init__(self, *, min_step: float = 1e-6) -> None:
        self.min_step = min_step

    def fit(self, logits: Array, labels: Array, sample_weight: Array | None = None) -> IsotonicCalibrator:
        """logits, labels (in [0, 1]; fractional for binned rows), sample_weight: [R]."""
        z = np.asarray(logits, dtype=np.float64)
        y = np.asarray(labels, dtype=np.float64)
        w = np.ones_like(z) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if z.shape != y.shape or z.shape != w.shape or w.sum() <= 0:
            raise ValueError("logits, labels and weights need the same length and some positive weight")
        keep = w > 0
        z, y, w = z[keep], y[keep], w[keep]
        # Equal logits form one row first, so that a knot's x is unique.
        unique_z, inverse = np.unique(z, return_inverse=True)
        inverse = inverse.reshape(-1)
        row_w = np.asarray(np.bincount(inverse, weights=w), dtype=np.float64)
        row_y = np.bincount(inverse, weights=w * y) / row_w
        starts, block_w, block_y = pool_adjacent_violators(row_y, row_w)
        block_z = np.add.reduceat(unique_z * row_w, starts) / block_w
        self.x_, self.y_ = strict_knots(block_z, block_y, min_step=self.min_step)
        return self

    def to_params(self) -> IsotonicParams:
        return IsotonicParams(x=self.x_, y=self.y_)

    @classmethod
    def from_params(cls, params: IsotonicParams) -> IsotonicCalibrator:
        fitted = cls()
        fitted.x_, fitted.y_ = list(params.x), list(params.y)
        return fitted

    def apply(self, logits: Array) -> Array:
        """Calibrated probabilities, computed by the serving code itself."""
        return sigmoid(calibrated_logit(self.to_params(), logits))
