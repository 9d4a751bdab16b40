"""The documented numeric bounds of policy and calibration files, and the field types that enforce them.

Every number a policy or a calibration file carries is finite and lies within a stated range, so that
no legal file can make the hot path compute an infinity or a NaN (which JSON cannot carry: an
overflowed utility used to be answered as `null`). The bounds are generous: fitted and hand-written
files sit orders of magnitude inside them.

Policy (`app.artifacts.policy`):
- utility-term and override weights: |w| <= 1e6 (`MAX_WEIGHT`);
- guardrail and override thresholds: probabilities in [0, 1];
- `slate.top_k` in [1, 100000] and slate-rule `max` in [0 or 1, 100000] (`MAX_SLATE_SIZE`);
- numbers compared with attributes (`equals`, `in`, override `when`): finite, |x| <= 1e300;
- number attributes in requests: finite, |x| <= 1e300 (`MAX_ATTRIBUTE_MAGNITUDE`, checked at the edge).
Calibration (`app.artifacts.calibration`):
- platt a and segment a in [1e-6, 1e6], platt b and segment b in [-1e6, 1e6];
- temperature in [1e-6, 1e6];
- knot x (logits) in [-1e6, 1e6], at most 100000 knots; knot y strictly inside (0, 1);
- shrinkage_prior in [0, 1e12]; segment count in [0, 2**63 - 1];
- bucket_edges strictly inside (0, 1), at most 99 (100 drift buckets: bounded metric labels).
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import AfterValidator

__all__ = [
    "MAX_ATTRIBUTE_MAGNITUDE",
    "MAX_BUCKET_EDGES",
    "MAX_CALIBRATION_PARAMETER",
    "MAX_COUNT",
    "MAX_KNOTS",
    "MAX_KNOT_LOGIT",
    "MAX_SHRINKAGE_PRIOR",
    "MAX_SLATE_SIZE",
    "MAX_WEIGHT",
    "MIN_POSITIVE_PARAMETER",
    "CalibrationOffset",
    "CalibrationScale",
    "KnotLogit",
    "Probability",
    "ShrinkagePrior",
    "SlateCap",
    "SlateSize",
    "Weight",
    "bounded_float",
    "bounded_int",
]

MAX_WEIGHT = 1e6
MAX_ATTRIBUTE_MAGNITUDE = 1e300
MAX_SLATE_SIZE = 100_000
MAX_CALIBRATION_PARAMETER = 1e6
MIN_POSITIVE_PARAMETER = 1e-6
MAX_KNOT_LOGIT = 1e6
MAX_KNOTS = 100_000
MAX_SHRINKAGE_PRIOR = 1e12
MAX_BUCKET_EDGES = 99
MAX_COUNT = 2**63 - 1


def bounded_float(low: float, high: float, fix: str) -> AfterValidator:
    """A validator refusing NaN, infinities and values outside [low, high]; its message says `fix`."""

    def check(value: float) -> float:
        if not math.isfinite(value) or not low <= value <= high:
            raise ValueError(f"{value!r} is not a finite number in [{low:g}, {high:g}]: {fix}")
        return value

    return AfterValidator(check)


def bounded_int(low: int, high: int, fix: str) -> AfterValidator:
    """A validator refusing integers outside [low, high]; its message says `fix`."""

    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"{value!r:.40} is not an integer in [{low}, {high}]: {fix}")
        return value

    return AfterValidator(check)


SlateSize = Annotated[
    int, bounded_int(1, MAX_SLATE_SIZE, f"answer between 1 and {MAX_SLATE_SIZE} candidates (leave it out for no limit)")
]
SlateCap = Annotated[
    int, bounded_int(0, MAX_SLATE_SIZE, f"cap a rule at 0 to {MAX_SLATE_SIZE} candidates (remove the rule for no cap)")
]
Weight = Annotated[
    float,
    bounded_float(-MAX_WEIGHT, MAX_WEIGHT, "write a weight with |w| <= 1e6 (rescale every weight of the policy"
                  " by one factor: the ranking only depends on their ratios)"),
]
Probability = Annotated[float, bounded_float(0.0, 1.0, "write a probability threshold between 0 and 1")]
CalibrationScale = Annotated[
    float,
    bounded_float(MIN_POSITIVE_PARAMETER, MAX_CALIBRATION_PARAMETER,
                  "a slope or temperature lies in [1e-6, 1e6]; refit the calibration"),
]
CalibrationOffset = Annotated[
    float,
    bounded_float(-MAX_CALIBRATION_PARAMETER, MAX_CALIBRATION_PARAMETER,
                  "an intercept lies in [-1e6, 1e6]; refit the calibration"),
]
KnotLogit = Annotated[
    float,
    bounded_float(-MAX_KNOT_LOGIT, MAX_KNOT_LOGIT, "knot logits lie in [-1e6, 1e6]; refit the calibration"),
]
ShrinkagePrior = Annotated[
    float,
    bounded_float(0.0, MAX_SHRINKAGE_PRIOR, "a shrinkage prior is a pseudo-count in [0, 1e12]"),
]
