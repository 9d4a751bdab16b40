"""Platt scaling: p = sigmoid(a * z + b), fitted by Newton's method on the (weighted) log-loss."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from app.artifacts.calibration import PlattParams
from app.serving.calibration import calibrated_logit, sigmoid

__all__ = ["PlattCalibrator"]

Array = npt.NDArray[np.float64]


class PlattCalibrator:
    """scikit-learn shaped: parameters in __init__, fit() -> self, fitted state a_, b_."""

    def __init__(self, *, max_iter: int = 100, tol: float = 1e-12, l2: float = 1e-9) -> None:
        self.max_iter = max_iter
        self.tol = tol
        self.l2 = l2

    def fit(self, logits: Array, labels: Array, sample_weight: Array | None = None) -> PlattCalibrator:
        """logits, labels, sample_weight: [R]. Rows with weight 0 (masked labels) are ignored."""
        z = np.asarray(logits, dtype=np.float64)
        y = np.asarray(labels, dtype=np.float64)
        w = np.ones_like(z) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if w.sum() <= 0 or not (0 < np.sum(w * y) < w.sum()):
            raise ValueError("Platt scaling needs observed positives and negatives")
        a, b = 1.0, 0.0
        for _ in range(self.max_iter):
            p = sigmoid(a * z + b)
            r = w * (p - y)
            s = w * p * (1 - p)
            gradient = np.array([np.dot(r, z) + self.l2 * (a - 1.0), r.sum()])
            hessian = np.array(
                [[np.dot(s, z * z) + self.l2, np.dot(s, z)], [np.dot(s, z), s.sum() + 1e-12]]
            )
            step = np.linalg.solve(hessian, gradient)
            a, b = a - step[0], b - step[1]
            if np.max(np.abs(step)) < self.tol:
                break
        if a <= 0:
            raise ValueError(f"fitted slope {a:.4g} <= 0: the logits rank positives below negatives")
        self.a_, self.b_ = float(a), float(b)
        return self

    def to_params(self) -> PlattParams:
        return PlattParams(a=self.a_, b=self.b_)

    def apply(self, logits: Array) -> Array:
        """Calibrated probabilities, by the serving code itself."""
        return sigmoid(calibrated_logit(self.to_params(), logits))
