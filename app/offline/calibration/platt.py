"""Platt scaling: p = sigmoid(a * z + b), fitted by Newton's method on the (weighted) log-loss.

As in Platt (1999), targets are smoothed to (N+ + 1) / (N+ + 2) and 1 / (N- + 2), and a weak
Gaussian prior pulls (a, b) toward the identity (1, 0): a rare task with a handful of positives
(or none, in a small window) still gets a finite, order-preserving fit instead of a = 0.
Labels may be fractional (a fine bin given as one weighted row with its label rate): the smoothed
target of a row is then y * t+ + (1 - y) * t-, which is the same log-loss as the bin's 0/1 rows.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from app.artifacts.calibration import PlattParams
from app.serving.calibration import calibrated_logit, sigmoid

__all__ = ["PlattCalibrator"]

Array = npt.NDArray[np.float64]


class PlattCalibrator:
    """scikit-learn shaped: parameters in __init__, fit() -> self, fitted state a_, b_."""

    def __init__(
        self, *, smoothing: bool = True, prior_strength: float = 1.0, max_iter: int = 100, tol: float = 1e-12
    ) -> None:
        self.smoothing = smoothing
        self.prior_strength = prior_strength
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, logits: Array, labels: Array, sample_weight: Array | None = None) -> PlattCalibrator:
        """logits, labels (in [0, 1]), sample_weight: [R]. Rows with weight 0 (masked labels) are ignored."""
        z = np.asarray(logits, dtype=np.float64)
        y = np.asarray(labels, dtype=np.float64)
        w = np.ones_like(z) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if z.shape != y.shape or z.shape != w.shape or w.sum() <= 0:
            raise ValueError("logits, labels and weights need the same length and some positive weight")
        if self.smoothing:
            positives = float(np.sum(w * y))
            negatives = float(np.sum(w * (1 - y)))
            y = y * ((positives + 1) / (positives + 2)) + (1 - y) * (1 / (negatives + 2))
        lam = self.prior_strength

        def objective(a: float, b: float) -> float:
            # Weighted cross-entropy to the (smoothed) targets plus the prior; convex in (a, b).
            u = a * z + b
            loss = np.dot(w, np.logaddexp(0.0, u) - y * u)
            return float(loss + 0.5 * lam * ((a - 1.0) ** 2 + 1e-3 * b * b))

        a, b = 1.0, 0.0
        current = objective(a, b)
        for _ in range(self.max_iter):
            p = sigmoid(a * z + b)
            r = w * (p - y)
            s = w * p * (1 - p)
            gradient = np.array([np.dot(r, z) + lam * (a - 1.0), r.sum() + lam * b * 1e-3])
            hessian = np.array([[np.dot(s, z * z) + lam, np.dot(s, z)], [np.dot(s, z), s.sum() + lam * 1e-3]])
            step = np.linalg.solve(hessian, gradient)
            # Backtracking: a full Newton step can overshoot on sparse data (a few positives far out in
            # the tail) and diverge; halving until the objective decreases keeps it on the convex bowl.
            # Near the optimum the objective cannot resolve a decrease, so small steps are taken whole.
            scale = 1.0
            if np.max(np.abs(step)) > 1e-3:
                while scale > 1e-10 and objective(a - scale * step[0], b - scale * step[1]) > current:
                    scale *= 0.5
            a, b = a - scale * step[0], b - scale * step[1]
            current = objective(a, b)
            if np.max(np.abs(scale * step)) < self.tol:
                break
        if a <= 0:
            raise ValueError(f"fitted slope {a:.4g} <= 0: the logits rank positives below negatives")
        self.a_, self.b_ = float(a), float(b)
        return self

    def to_params(self) -> PlattParams:
        return PlattParams(a=self.a_, b=self.b_)

    @classmethod
    def from_params(cls, params: PlattParams) -> PlattCalibrator:
        fitted = cls()
        fitted.a_, fitted.b_ = params.a, params.b
        return fitted

    def apply(self, logits: Array) -> Array:
        """Calibrated probabilities, computed by the serving code itself."""
        return sigmoid(calibrated_logit(self.to_params(), logits))
