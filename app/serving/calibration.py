"""Apply a calibration file to a batch of logits: pure numpy, the same code offline and online.

Everything happens in logit space: the global calibrator maps the model's logit z to a calibrated
logit, each segment correction maps that affinely (a_v > 0), and one sigmoid at the end gives the
probability. Knot tables (isotonic, histogram) are interpolated linearly in logit(y), and beyond the
end knots extrapolated with the end slopes, so the map is strictly increasing everywhere: clipping
at the ends would tie every candidate past the last knot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.artifacts.calibration import (
    CalibrationFile,
    HistogramParams,
    IsotonicParams,
    PlattParams,
    TaskCalibration,
    TemperatureParams,
)
from app.artifacts.manifest import ModelManifest

__all__ = ["CalibrationSet", "calibrated_logit", "logit", "sigmoid"]

Array = npt.NDArray[np.float64]
_EPS = 1e-15


def sigmoid(z: Array) -> Array:
    """Numerically safe logistic function."""
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64))))


def logit(p: Array) -> Array:
    """Inverse of `sigmoid`, with p clipped to [1e-15, 1 - 1e-15]."""
    q = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.asarray(np.log(q) - np.log1p(-q))


def _knot_logit(z: Array, x: Array, ly: Array) -> Array:
    i = np.clip(np.searchsorted(x, z, side="right") - 1, 0, len(x) - 2)
    slope = (ly[i + 1] - ly[i]) / (x[i + 1] - x[i])
    value = ly[i] + slope * (z - x[i])
    # Rounding can put a piece's value a hair past its end knot's; clipping each piece to its knot
    # values (except where it extrapolates) keeps the whole map non-decreasing in floating point.
    value = np.where(z <= x[i + 1], np.minimum(value, ly[i + 1]), value)
    return np.asarray(np.where(z >= x[i], np.maximum(value, ly[i]), value))


def calibrated_logit(
    params: PlattParams | TemperatureParams | IsotonicParams | HistogramParams, z: npt.ArrayLike
) -> Array:
    """Global calibrator in logit space. z: float64 [B] raw logits -> float64 [B]."""
    z = np.asarray(z, dtype=np.float64)  # float32 model logits are widened once, here
    if isinstance(params, PlattParams):
        return params.a * z + params.b
    if isinstance(params, TemperatureParams):
        return z / params.temperature
    x = np.asarray(params.x, dtype=np.float64)
    ly = logit(np.asarray(params.y, dtype=np.float64))
    return _knot_logit(z, x, ly)


@dataclass(frozen=True, slots=True)
class _SegmentTable:
    column: int  # index of the segment feature in the categorical input matrix
    a: Array  # [vocabulary size + 1], identity (1.0) for OOV and values without a correction
    b: Array


@dataclass(frozen=True, slots=True)
class _TaskApplier:
    params: PlattParams | TemperatureParams | IsotonicParams | HistogramParams
    segments: tuple[_SegmentTable, ...]


class CalibrationSet:
    """A calibration file compiled against one manifest for vectorised application."""

    def __init__(self, calibration: CalibrationFile, manifest: ModelManifest) -> None:
        categorical = [(f.name, f.vocabulary) for f in manifest.features.categorical]
        self._compile(calibration, manifest.task_names(), categorical)

    @classmethod
    def for_vocabularies(
        cls, calibration: CalibrationFile, tasks: list[str], categorical: list[tuple[str, list[str]]]
    ) -> CalibrationSet:
        """Without a manifest (offline): `tasks` in column order, `categorical` (feature, vocabulary)
        in column order of the codes passed to `apply` (code = 1 + position, 0 = unknown)."""
        compiled = cls.__new__(cls)
        compiled._compile(calibration, tasks, categorical)
        return compiled

    def _compile(
        self, calibration: CalibrationFile, tasks: list[str], categorical: list[tuple[str, list[str]]]
    ) -> None:
        self.version = calibration.version
        self.file = calibration
        columns = {name: j for j, (name, _) in enumerate(categorical)}
        vocabularies = dict(categorical)
        self._tasks = tuple(_compile_task(calibration.tasks[task], columns, vocabularies) for task in tasks)
        self._affine = _affine_plan(self._tasks)

    def apply(self, logits: npt.NDArray[np.floating], categorical: npt.NDArray[np.int64]) -> Array:
        """logits: [B, T] in manifest task order; categorical: [B, C] encoded inputs -> p [B, T]."""
        if self._affine is not None:
            return self._affine.apply(logits, categorical)
        return self.apply_per_task(logits, categorical)

    def apply_per_task(self, logits: npt.NDArray[np.floating], categorical: npt.NDArray[np.int64]) -> Array:
        """`apply`, one task at a time: the general path (any calibrator), and the reference of the fast one."""
        out = np.empty(logits.shape, dtype=np.float64)
        # A huge logit times a slope may overflow to +/-inf: sigmoid maps it to 1 or 0, no warning needed.
        with np.errstate(over="ignore"):
            for t, task in enumerate(self._tasks):
                z = calibrated_logit(task.params, logits[:, t])
                for seg in task.segments:
                    codes = categorical[:, seg.column]
                    z = seg.a[codes] * z + seg.b[codes]
                out[:, t] = sigmoid(z)
        return out


@dataclass(frozen=True, slots=True)
class _AffinePlan:
    """Every task's calibrator affine in the logit (Platt or temperature) and its segment corrections on
    the same features in the same order: the whole [B, T] block in a handful of numpy calls.

    Per task the general path computes `a * z + b` (Platt) or `z / t` (temperature), then `a_v * z + b_v`
    per segment, then the sigmoid. Here `(z * a) / t + b` with t = 1 for Platt and a = 1, b = 0 for
    temperature, and a missing segment layer is the identity (a_v = 1, b_v = 0): the same floating-point
    operations on the same values, so the result is identical bit for bit.
    """

    a: Array  # [T]
    t: Array  # [T]
    b: Array  # [T]
    layers: tuple[tuple[int, Array, Array], ...]  # (categorical column, a [V + 1, T], b [V + 1, T])

    def apply(self, logits: npt.NDArray[np.floating], categorical: npt.NDArray[np.int64]) -> Array:
        with np.errstate(over="ignore"):
            z = logits.astype(np.float64) * self.a / self.t + self.b
            for column, a, b in self.layers:
                codes = categorical[:, column]
                z = a[codes] * z + b[codes]
            return sigmoid(z)


def _affine_plan(tasks: tuple[_TaskApplier, ...]) -> _AffinePlan | None:
    """The vectorised form of `tasks`, or None when a calibrator is not affine (isotonic, histogram) or
    the tasks correct by different features at the same position."""
    if not tasks or not all(isinstance(task.params, PlattParams | TemperatureParams) for task in tasks):
        return None
    depth = max(len(task.segments) for task in tasks)
    layers = []
    for k in range(depth):
        present = [task.segments[k] for task in tasks if len(task.segments) > k]
        if len({seg.column for seg in present}) != 1 or len({len(seg.a) for seg in present}) != 1:
            return None
        size = len(present[0].a)
        scale, offset = np.ones((size, len(tasks))), np.zeros((size, len(tasks)))
        for j, task in enumerate(tasks):
            if len(task.segments) > k:
                scale[:, j], offset[:, j] = task.segments[k].a, task.segments[k].b
        layers.append((present[0].column, scale, offset))
    # (a, t, b) per task: Platt is (a, 1, b), temperature (1, t, 0).
    affine = [(p.a, 1.0, p.b) if isinstance(p, PlattParams) else (1.0, p.temperature, 0.0)
              for p in (task.params for task in tasks) if isinstance(p, PlattParams | TemperatureParams)]
    a, t, b = (np.array(values, dtype=np.float64) for values in zip(*affine, strict=True))
    return _AffinePlan(a=a, t=t, b=b, layers=tuple(layers))


def _compile_task(
    cal: TaskCalibration, columns: dict[str, int], vocabularies: dict[str, list[str]]
) -> _TaskApplier:
    tables = []
    for seg in cal.segments:
        vocabulary = vocabularies[seg.feature]
        a = np.ones(len(vocabulary) + 1, dtype=np.float64)
        b = np.zeros(len(vocabulary) + 1, dtype=np.float64)
        for i, value in enumerate(vocabulary):
            params = seg.values.get(value)
            if params is not None:
                a[i + 1], b[i + 1] = params.a, params.b
        tables.append(_SegmentTable(column=columns[seg.feature], a=a, b=b))
    return _TaskApplier(params=cal.calibrator, segments=tuple(tables))
