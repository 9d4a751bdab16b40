"""Segment corrections: per value of a segment feature, an affine map in logit space, shrunk to identity.

For one segment feature and one of its values v, the rows of v (with their current calibrated logit
c: the global calibrator's output, after the corrections of the features declared before this one)
get a maximum-likelihood Platt fit p = sigmoid(a_hat * c + b_hat) (no target smoothing, the weak
identity prior of `PlattCalibrator`; a_hat is clipped to [0.1, 10]). The stored correction is

    a_v = 1 + s_v * (a_hat - 1),   b_v = s_v * b_hat,   s_v = n_v / (n_v + k)

with n_v = min(positives, negatives) of v (the information about a rate lives in the rarer class)
and k = `shrinkage_prior`, a pseudo-count. This is the posterior mean of (a, b) under a Gaussian prior
centred on the identity (1, 0) whose precision equals k examples of the rarer class, when the fit's
own precision is taken as n_v: a value with n_v = k moves half way to its own fit, a value without
positives keeps the global calibration exactly. Values never seen in fitting, values outside the
model's vocabulary (`allowed`), null values, and out-of-vocabulary values at serving time get no
entry, so they keep the global calibration too.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import numpy.typing as npt

from app.artifacts.calibration import SegmentCalibration, SegmentParams
from app.offline.calibration.platt import PlattCalibrator
from app.offline.calibration.source import MISSING

__all__ = ["fit_segment_correction"]

Array = npt.NDArray[np.float64]
SLOPE_RANGE = (0.1, 10.0)


def fit_segment_correction(
    feature: str, values: npt.NDArray[np.str_], z: Array, y: Array, w: Array, *, shrinkage_prior: float,
    allowed: Collection[str] | None = None,
) -> SegmentCalibration:
    """values, z (current calibrated logits), y (label rates in [0, 1]), w (weights): all [K] rows."""
    corrections: dict[str, SegmentParams] = {}
    for value in sorted(set(values.tolist())):
        if value == MISSING or (allowed is not None and value not in allowed):
            continue
        rows = values == value
        weight = float(w[rows].sum())
        positives = float(np.dot(w[rows], y[rows]))
        information = min(positives, weight - positives)
        shrink = information / (information + shrinkage_prior) if information > 0 else 0.0
        a_hat, b_hat = 1.0, 0.0
        if shrink > 0:
            try:
                fitted = PlattCalibrator(smoothing=False).fit(z[rows], y[rows], w[rows])
                a_hat, b_hat = float(np.clip(fitted.a_, *SLOPE_RANGE)), fitted.b_
            except (ValueError, np.linalg.LinAlgError):
                shrink = 0.0  # no usable fit (e.g. a single logit bin): keep the global calibration
        corrections[value] = SegmentParams(
            a=1.0 + shrink * (a_hat - 1.0), b=shrink * b_hat, count=round(weight)
        )
    return SegmentCalibration(feature=feature, values=corrections, shrinkage_prior=shrinkage_prior)
