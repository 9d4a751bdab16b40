"""Temperature scaling: p = sigmoid(z / T), one parameter fitted by Newton's method on the log-loss.

Temperature only sharpens or flattens the logit around 0, so it cannot fix a bias in the base rate;
it suits a well-centred model that is over- or under-confident. Labels may be fractional (a fine bin
given as one weighted row with its label rate), which gives the same log-loss as the bin's rows.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from app.artifacts.calibration import TemperatureParams
from app.serving.calibration import calibrated_logit, sigmoid

__all__ = ["TemperatureCalibrator"]

Array = npt.NDArray[np.float64]


class TemperatureCalibrator:
    """scikit-learn shaped: parameters in __init__, fit() -> self, fitted state temperature_."""

    def __init__(
        self, *, max_iter: int = 100, tol: float = 1e-12, min_temperature: float = 1e-2, max_temperature: float = 1e6
    ) -> None:
        self.max_iter = max_iter
        self.tol = tol
        self.min_temperature = min_temperature
        # Logits without signal drive 1/T toward 0; 1e6 (the file's bound) already answers ~0.5 everywhere.
        self.max_temperature = max_temperature

    def fit(self, logits: Array, labels: Array, sample_weight: Array | None = None) -> TemperatureCalibrator:
        """logits, labels (in [0, 1]), sample_weight: [R]; weight-0 rows are ignored."""
        z = np.asarray(logits, dtype=np.float64)
        y = np.asarray(labels, dtype=np.float64)
        w = np.ones_like(z) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if z.shape != y.shape or z.shape != w.shape or w.sum() <= 0:
            raise ValueError("logits, labels and weights need the same length and some positive weight")
        # Newton on s = 1 / T; the log-loss is convex in s. Steps are damped to keep s > 0.
        s = 1.0
        s_max, s_min = 1.0 / self.min_temperature, 1.0 / self.max_temperature
        for _ in range(self.max_iter):
            p = sigmoid(s * z)
            gradient = float(np.dot(w * (p - y), z))
            hessian = float(np.dot(w * p * (1 - p), z * z)) + 1e-12
            new = min(max(s - gradient / hessian, s / 10.0, s_min), s_max)
            done = abs(new - s) < self.tol
            s = new
            if done:
                break
        self.temperature_ = float(1.0 / s)
        return self

    def to_params(self) -> TemperatureParams:
        return TemperatureParams(temperature=self.temperature_)

    @classmethod
    def from_params(cls, params: TemperatureParams) -> TemperatureCalibrator:
        fitted = cls()
        fitted.temperature_ = params.temperature
        return fitted

    def apply(self, logits: Array) -> Array:
        """Calibrated probabilities, computed by the serving code itself."""
        return sigmoid(calibrated_logit(self.to_params(), logits))
