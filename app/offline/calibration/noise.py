"""Sampling noise of calibration metrics: is a correction larger than what chance alone would show?

- Calibration ratio sum(p) / sum(y): its noise is the count of positives. The positive rate
  Y / n gets a Wilson 95 % interval [r_lo, r_hi]; with sum(p) held fixed the ratio's interval is
  [sum(p) / (n r_hi), sum(p) / (n r_lo)]. A raw ratio whose interval holds 1 is calibrated within
  noise: correcting it changes nothing that the data can show.
- Field-RCE sum_v |sum_v(p) - sum_v(y)| / sum(y): even a perfectly calibrated model shows
  E|S_v - E S_v| ~ sqrt(2/pi * Var S_v) per value, Var S_v ~ y_v (1 - y_v / n_v) (binomial, from the
  value's positives y_v and rows n_v). Their sum over Y is the Field-RCE *noise floor*; a Field-RCE,
  or a change of it, below the floor is not evidence of anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = ["Z95", "field_rce_noise", "ratio_interval", "wilson", "with_intervals", "within_noise"]

Z95 = 1.959963984540054


def wilson(positives: float, count: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a rate positives / count (count > 0)."""
    if count <= 0:
        return (math.nan, math.nan)
    rate = positives / count
    denominator = 1 + z * z / count
    centre = (rate + z * z / (2 * count)) / denominator
    half = z * math.sqrt(max(rate * (1 - rate), 0.0) / count + z * z / (4 * count * count)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def ratio_interval(predicted: float, positives: float, count: float) -> tuple[float, float]:
    """95 % interval of sum(p) / sum(y) from the positives count (Wilson on the rate; inf when 0 positives)."""
    low_rate, high_rate = wilson(positives, count)
    if not math.isfinite(low_rate):
        return (math.nan, math.nan)
    low = predicted / (count * high_rate) if high_rate > 0 else math.inf
    high = predicted / (count * low_rate) if low_rate > 0 else math.inf
    return (low, high)


def field_rce_noise(cells: Sequence[tuple[float, float]], positives: float) -> float:
    """Expected Field-RCE of a perfectly calibrated model: cells = (rows n_v, positives y_v) per value."""
    if positives <= 0:
        return math.nan
    spread = sum(math.sqrt(2 / math.pi * max(y * (1 - y / n), 0.0)) for n, y in cells if n > 0)
    return spread / positives


def within_noise(ratio_low: float, ratio_high: float) -> bool:
    """True when a raw ratio's interval holds 1: a correction of it is smaller than its noise."""
    return ratio_low <= 1.0 <= ratio_high


def with_intervals(metrics: Mapping[str, float]) -> dict[str, float]:
    """`metrics` plus calibration_ratio_low / _high (needs count, positives, calibration_ratio)."""
    out = dict(metrics)
    count, positives, ratio = (metrics.get(k, math.nan) for k in ("count", "positives", "calibration_ratio"))
    if count > 0 and positives > 0 and math.isfinite(ratio):
        low, high = ratio_interval(ratio * positives, positives, count)
        out["calibration_ratio_low"], out["calibration_ratio_high"] = low, high
    return out
