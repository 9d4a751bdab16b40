"""Knot tables for the isotonic and histogram calibrators: pooling, and strictly increasing output.

The serving apply interpolates a knot table linearly in logit(y) and extrapolates with the end
slopes, so a table is usable only when x and y are both strictly increasing (a flat piece would tie
candidates, a falling one flip them). `strict_knots` guarantees that:
1. rates are clipped to [1e-7, 1 - 1e-7] (a pooled block without positives has rate 0);
2. in logit space each knot is raised to at least the previous one + `min_step` (1e-6 by default),
   which moves a probability by at most ~1e-6 relative per knot: far below any measurable effect;
3. one guard knot is added 1 logit beyond each end, so that the extrapolation slope (calibrated
   logit per raw logit) lies in [0.05, 2]: the slope between two neighbouring pooled blocks can be
   30 or more, and extrapolating that would send every candidate just past the last knot to p ~ 1.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from app.serving.calibration import logit, sigmoid

__all__ = ["pool_adjacent_violators", "strict_knots"]

Array = npt.NDArray[np.float64]
RATE_CLIP = 1e-7
END_SLOPES = (0.05, 2.0)  # bounds of the extrapolation slope beyond the data


def pool_adjacent_violators(y: Array, w: Array) -> tuple[npt.NDArray[np.intp], Array, Array]:
    """Weighted isotonic regression of y (ordered by x) by pooling adjacent violators.

    y, w: [K] (w > 0). Returns (block start indices [M], block weights [M], block rates [M]) with
    rates *strictly* increasing: equal neighbours are pooled too, so no flat step remains.
    """
    starts: list[int] = []
    weights: list[float] = []
    sums: list[float] = []
    for i, (yi, wi) in enumerate(zip(y.tolist(), w.tolist(), strict=True)):
        starts.append(i)
        weights.append(wi)
        sums.append(yi * wi)
        # Pool while the last block's mean is not above the one before it.
        while len(weights) > 1 and sums[-1] * weights[-2] <= sums[-2] * weights[-1]:
            last_w, last_sum = weights.pop(), sums.pop()
            weights[-1] += last_w
            sums[-1] += last_sum
            starts.pop()
    block_w = np.asarray(weights, dtype=np.float64)
    return np.asarray(starts, dtype=np.intp), block_w, np.asarray(sums, dtype=np.float64) / block_w


def strict_knots(x: Array, y: Array, *, min_step: float = 1e-6) -> tuple[list[float], list[float]]:
    """x strictly increasing logits [M >= 1], y non-decreasing rates [M] -> a valid knot table.

    A single knot becomes two (x -/+ 0.5, identity slope); with the guard knots the table has M + 2.
    """
    x = np.asarray(x, dtype=np.float64)
    ly = logit(np.clip(np.asarray(y, dtype=np.float64), RATE_CLIP, 1.0 - RATE_CLIP))
    if x.size == 1:
        x = np.array([x[0] - 0.5, x[0] + 0.5])
        ly = np.array([ly[0] - 0.5, ly[0] + 0.5])
    out = ly.copy()
    for k in range(1, out.size):
        out[k] = max(out[k], out[k - 1] + min_step)
    low = float(np.clip((out[1] - out[0]) / (x[1] - x[0]), *END_SLOPES))
    high = float(np.clip((out[-1] - out[-2]) / (x[-1] - x[-2]), *END_SLOPES))
    x = np.r_[x[0] - 1.0, x, x[-1] + 1.0]
    out = np.r_[out[0] - low, out, out[-1] + high]
    probabilities = sigmoid(out)
    # Far in the tails sigmoid can round two distinct logits to one float; drop such knots.
    keep = np.r_[True, np.diff(probabilities) > 0] & (probabilities > 0) & (probabilities < 1)
    return [float(v) for v in x[keep]], [float(v) for v in probabilities[keep]]
