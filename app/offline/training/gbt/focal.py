"""Focal loss as a LightGBM custom objective, so a GBT task can train with `{kind: focal}` like a network's.

The element loss is the networks' (`app.offline.training.losses.focal_loss`): with p = sigmoid(z) and
p_t = p if y = 1 else 1 - p, l = -a_t (1 - p_t)^gamma log p_t, a_t = alpha if y = 1 else 1 - alpha
(a_t = 1 when alpha is None). Writing u = z for a positive and u = -z for a negative, l = f(u) with
s = sigmoid(u) and

    f'(u)  = a (1 - s)^gamma (gamma s log s - (1 - s))
    f''(u) = a s [(1 - s)^(gamma + 1) (gamma log s + gamma + 1) - gamma (1 - s)^gamma (gamma s log s - (1 - s))]

so dl/dz = +-f'(u) and d2l/dz2 = f''(u); gamma = 0 without alpha gives BCE's p - y and p (1 - p).
The hessian of focal loss is negative on badly misclassified rows, and a Newton step on a tiny
floored hessian is huge; so the hessian is floored at the curvature BCE would have with the focal
weight held constant, a (1 - s)^gamma s (1 - s) (positive; equal to f'' at gamma = 0), and at
`HESSIAN_FLOOR`. Rows carry their sample weight x observed mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["HESSIAN_FLOOR", "FocalObjective"]

F64 = npt.NDArray[np.float64]
HESSIAN_FLOOR = 1e-6


@dataclass(frozen=True)
class FocalObjective:
    """LightGBM's custom-objective callable: (raw scores incl. init score, dataset) -> (grad, hess)."""

    labels: F64
    weights: F64
    gamma: float
    alpha: float | None

    def __deepcopy__(self, _memo: dict[int, Any]) -> FocalObjective:
        return self  # immutable; `lightgbm.train` deep-copies its params, and the arrays need no copy

    def element_loss(self, z: F64) -> F64:
        """Focal loss per row (unweighted), for checks and reports."""
        u = np.where(self.labels > 0, z, -z)
        log_s = -np.logaddexp(0.0, -u)
        s = np.exp(log_s)
        out: F64 = -self._a() * (1.0 - s) ** self.gamma * log_s
        return out

    def _a(self) -> F64 | float:
        if self.alpha is None:
            return 1.0
        out: F64 = np.where(self.labels > 0, self.alpha, 1.0 - self.alpha)
        return out

    def __call__(self, preds: F64, _dataset: Any) -> tuple[F64, F64]:
        z = np.asarray(preds, dtype=np.float64)
        sign = np.where(self.labels > 0, 1.0, -1.0)
        u = sign * z
        log_s = -np.logaddexp(0.0, -u)
        s = np.exp(log_s)
        q = 1.0 - s  # = sigmoid(-u), computed directly where s rounds to 1
        q = np.where(q > 0, q, np.exp(-np.logaddexp(0.0, u)))
        g, a = self.gamma, self._a()
        inner = g * s * log_s - q
        first = a * q**g * inner
        second = a * s * (q ** (g + 1.0) * (g * log_s + g + 1.0) - g * q**g * inner)
        grad: F64 = self.weights * sign * first
        floor = np.maximum(a * q**g * s * q, HESSIAN_FLOOR)
        hess: F64 = self.weights * np.maximum(second, floor)
        return grad, hess
