"""Schema of a calibration file: per task, a global calibrator and optional segment corrections.

All calibrators map a task's raw logit z to a probability. With s = sigmoid:
- ``platt``:       p = s(a * z + b), a > 0;
- ``temperature``: p = s(z / T), T > 0;
- ``isotonic``:    p = interp(z, x, y), a strictly increasing knot table (clipped at the ends);
- ``histogram``:   p = interp(z, x, y), equal-mass bin centres x and their rates y, strictly
                   increasing so that ranking within a segment is never tied or flipped.
A segment correction on top of the global output q is affine in logit space:
p = s(a_v * logit(q) + b_v) with a_v > 0 for the segment feature's value v (unknown values keep q).
Segment corrections are applied in file order, each on the output of the previous one.
Every parameter is finite and bounded (`app.artifacts.bounds`): slopes and temperatures in
[1e-6, 1e6], intercepts in [-1e6, 1e6], knot logits in [-1e6, 1e6], at most 100000 knots and 99
bucket edges, so that applying a legal file to any finite logit never yields NaN.
"""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise
from typing import Annotated, Literal

from pydantic import Field, model_validator

from app.artifacts.bounds import (
    MAX_BUCKET_EDGES,
    MAX_COUNT,
    MAX_KNOTS,
    CalibrationOffset,
    CalibrationScale,
    KnotLogit,
    ShrinkagePrior,
)
from app.artifacts.common import FiniteFloat, Identifier, StrictModel

__all__ = [
    "BeforeAfter",
    "CalibrationFile",
    "CalibratorParams",
    "FittedFor",
    "HistogramParams",
    "IsotonicParams",
    "PlattParams",
    "ReferenceDistribution",
    "SegmentCalibration",
    "SegmentParams",
    "TaskCalibration",
    "TemperatureParams",
]


class PlattParams(StrictModel):
    method: Literal["platt"] = "platt"
    a: CalibrationScale = Field(description="slope on the logit; > 0 keeps the order")
    b: CalibrationOffset


class TemperatureParams(StrictModel):
    method: Literal["temperature"] = "temperature"
    temperature: CalibrationScale


# Knots closer than this make the interpolation slope overflow (or meaningless); fitted tables sit
# on bins of the logit axis, far wider apart.
MIN_KNOT_GAP = 1e-9


class _KnotTable(StrictModel):
    x: list[KnotLogit] = Field(min_length=2, max_length=MAX_KNOTS, description="logit knots, strictly increasing")
    y: list[FiniteFloat] = Field(
        min_length=2, max_length=MAX_KNOTS, description="probabilities, strictly increasing in (0, 1)"
    )

    @model_validator(mode="after")
    def _strictly_increasing(self) -> _KnotTable:
        if len(self.x) != len(self.y):
            raise ValueError(
                f"x and y need the same length (got {len(self.x)} and {len(self.y)}): refit the calibration"
            )
        if any(b - a < MIN_KNOT_GAP for a, b in pairwise(self.x)):
            raise ValueError(
                f"x must be strictly increasing, with knots at least {MIN_KNOT_GAP:g} apart: refit the calibration"
            )
        if any(b <= a for a, b in pairwise(self.y)):
            raise ValueError(
                "y must be strictly increasing (a flat or falling table ties or flips ranks): refit the calibration"
            )
        if self.y[0] <= 0.0 or self.y[-1] >= 1.0:
            raise ValueError("y must lie strictly inside (0, 1): refit the calibration")
        return self


class IsotonicParams(_KnotTable):
    method: Literal["isotonic"] = "isotonic"


class HistogramParams(_KnotTable):
    method: Literal["histogram"] = "histogram"


CalibratorParams = Annotated[
    PlattParams | TemperatureParams | IsotonicParams | HistogramParams, Field(discriminator="method")
]


class SegmentParams(StrictModel):
    """Correction for one segment value, already shrunk toward identity by its example count."""

    a: CalibrationScale
    b: CalibrationOffset
    count: int = Field(ge=0, le=MAX_COUNT, description="examples the correction was fitted on")


class SegmentCalibration(StrictModel):
    """Per-value corrections for one segment feature (a categorical feature of the model)."""

    feature: Identifier
    values: dict[str, SegmentParams]
    shrinkage_prior: ShrinkagePrior = Field(default=0.0, description="pseudo-count toward identity")


class ReferenceDistribution(StrictModel):
    """Share of calibrated predictions per drift bucket on the fit data (for PSI)."""

    fractions: list[FiniteFloat] = Field(max_length=MAX_BUCKET_EDGES + 1)

    @model_validator(mode="after")
    def _sums_to_one(self) -> ReferenceDistribution:
        if any(not 0.0 <= f <= 1.0 for f in self.fractions) or abs(sum(self.fractions) - 1.0) > 1e-6:
            raise ValueError("fractions must lie in [0, 1] and sum to 1: refit the calibration")
        return self


class BeforeAfter(StrictModel):
    """Held-out metrics of the raw and the calibrated predictions."""

    before: dict[str, float] = Field(default_factory=dict)
    after: dict[str, float] = Field(default_factory=dict)


class TaskCalibration(StrictModel):
    """Calibration of one task."""

    calibrator: CalibratorParams
    segments: list[SegmentCalibration] = Field(default_factory=list)
    # Interior edges on the calibrated probability; len(edges) + 1 buckets.
    bucket_edges: list[FiniteFloat] = Field(min_length=1, max_length=MAX_BUCKET_EDGES)
    reference: ReferenceDistribution
    metrics: BeforeAfter = BeforeAfter()

    @model_validator(mode="after")
    def _consistent(self) -> TaskCalibration:
        edges = self.bucket_edges
        if any(b <= a for a, b in pairwise(edges)) or edges[0] <= 0 or edges[-1] >= 1:
            raise ValueError("bucket_edges must be strictly increasing inside (0, 1): refit the calibration")
        if len(self.reference.fractions) != len(edges) + 1:
            raise ValueError(
                f"reference.fractions needs len(bucket_edges) + 1 = {len(edges) + 1} entries,"
                f" got {len(self.reference.fractions)}: refit the calibration"
            )
        return self


class FittedFor(StrictModel):
    """The model version a calibration belongs to."""

    name: Identifier
    version: Identifier
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class CalibrationFile(StrictModel):
    """`model_store/<model>/<version>/calibration/<version>.json`."""

    schema_version: Literal[1]
    version: Identifier
    # None: fitted offline without a bundle; usable by `calibrate apply`, refused by the service.
    model: FittedFor | None
    created_at: datetime
    tasks: dict[str, TaskCalibration] = Field(min_length=1)
    notes: str = ""
