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


# Segment layers are folded into one table of every combination of their values while it holds at most
# this many entries (combinations x tasks); beyond it (large vocabularies) they are applied layer by layer.
MAX_FOLDED_ENTRIES = 1 << 16
_FLOAT32_MAX = float(np.finfo(np.float32).max)  # the largest logit a float32 model can emit


@dataclass(frozen=True, slots=True)
class _AffinePlan:
    """Every task's calibrator affine in the logit (Platt or temperature) and its segment corrections on
    the same features in the same order: the whole [B, T] block in a handful of numpy calls.

    Per task the general path computes `a * z + b` (Platt) or `z / t` (temperature), then `a_v * z + b_v`
    per segment layer, then the sigmoid: an affine map of z per (task, segment values). Composed once
    here, `scale[i] * z + offset[i]` with i the index of the request's combination of segment values
    (`columns` weighted by `strides`); the composition rounds differently from the step-by-step loop, by
    a few units in the last place of the logit (equal to 1e-12 in probability). Without segments, one
    [T] scale and offset.
    """

    columns: tuple[int, ...]  # categorical columns of the segment layers, in order
    strides: npt.NDArray[np.int64]  # [L]: combination index = sum(code_k * strides[k])
    scale: Array  # [S, T] (or [1, T] without segments)
    offset: Array

    def apply(self, logits: npt.NDArray[np.floating], categorical: npt.NDArray[np.int64]) -> Array:
        """No overflow is possible (checked when the plan is built), so no `errstate` is needed."""
        if not self.columns:
            z = logits * self.scale[0]
            z += self.offset[0]
        else:
            combination = categorical[:, self.columns] @ self.strides
            z = logits * self.scale[combination]
            z += self.offset[combination]
        # `sigmoid(z)` in place: the same operations in the same order, without temporaries.
        z *= 0.5
        np.tanh(z, out=z)
        z += 1.0
        z *= 0.5
        return np.asarray(z, dtype=np.float64)


def _affine_plan(tasks: tuple[_TaskApplier, ...]) -> _AffinePlan | None:
    """The composed form of `tasks`, or None when a calibrator is not affine (isotonic, histogram), the
    tasks correct by different features at the same position, or the combinations are too many."""
    if not tasks or not all(isinstance(task.params, PlattParams | TemperatureParams) for task in tasks):
        return None
    depth = max(len(task.segments) for task in tasks)
    layers = []  # (column, scale [V + 1, T], offset [V + 1, T]); identity for a task without that layer
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
    sizes = [len(scale) for _, scale, _ in layers]
    if int(np.prod(sizes)) * len(tasks) > MAX_FOLDED_ENTRIES:
        return None
    # Per task, the global map: Platt z -> a z + b, temperature z -> z / t.
    scale = np.array([[p.a if isinstance(p, PlattParams) else 1.0 / p.temperature
                       for p in (task.params for task in tasks) if isinstance(p, PlattParams | TemperatureParams)]])
    offset = np.array([[p.b if isinstance(p, PlattParams) else 0.0 for p in (task.params for task in tasks)]])
    # Every combination of segment values (row-major over the layers), each layer composed in order.
    combinations = np.indices(sizes).reshape(len(sizes), -1).T if sizes else np.zeros((1, 0), dtype=np.intp)
    scale, offset = np.repeat(scale, len(combinations), axis=0), np.repeat(offset, len(combinations), axis=0)
    for k, (_, layer_scale, layer_offset) in enumerate(layers):
        codes = combinations[:, k]
        scale, offset = layer_scale[codes] * scale, layer_scale[codes] * offset + layer_offset[codes]
    if not np.isfinite(np.abs(scale).max() * _FLOAT32_MAX + np.abs(offset).max()):  # could overflow: not here
        return None
    strides = np.array([int(np.prod(sizes[k + 1:])) for k in range(len(sizes))], dtype=np.int64)
    return _AffinePlan(columns=tuple(column for column, _, _ in layers), strides=strides, scale=scale, offset=offset)


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
