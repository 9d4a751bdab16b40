"""Mergeable sufficient statistics for calibration fitting: sums per task x segment cell x logit bin.

Per task, the raw logit axis is cut into `LogitGrid.bins` fine bins of equal width on
[lo, hi] (logits outside fall into the end bins). A *cell* is one combination of the declared
segment features' values (("new", "video"), ...). For every (cell, bin) three float64 sums are kept:

    weight    = sum of w          (w = 1 for an observed row, 0 for a masked one)
    label_sum = sum of w * y
    logit_sum = sum of w * z

Sums of sums are sums, so statistics of shards merge exactly (`merge`), whatever engine computed
them (a Spark job would emit the same three sums keyed by task, cell and bin). Every fitter then
works on the bins: a bin is one weighted row at its mean logit with a fractional label, which loses
nothing for the affine fits up to the within-bin spread of z (bin width 32 / 4096 ~ 0.008 in logit).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["MAX_CELLS", "BinnedRows", "CalibrationStats", "LogitGrid", "TaskStats"]

Array = npt.NDArray[np.float64]
Cell = tuple[str, ...]
# 1024 cells x 4096 bins x 3 sums x 8 bytes = 100 MB per task: segment features are meant to be few
# and of low cardinality (tenure, item type, country), not ids.
MAX_CELLS = 1024


@dataclass(frozen=True, slots=True)
class LogitGrid:
    """Equal-width fine bins on the logit axis; the end bins also take everything beyond."""

    lo: float = -16.0
    hi: float = 16.0
    bins: int = 4096

    def index(self, z: Array) -> npt.NDArray[np.intp]:
        """z: [R] logits -> bin index [R] in [0, bins)."""
        scaled = (np.asarray(z, dtype=np.float64) - self.lo) * (self.bins / (self.hi - self.lo))
        # Clipped to [0, bins) first, the truncating cast is the floor.
        return np.clip(scaled, 0.0, self.bins - 0.5).astype(np.intp)


@dataclass(frozen=True, slots=True)
class BinnedRows:
    """Non-empty bins as weighted rows: mean logit z, label rate y (fractional) and weight w, all [K]."""

    z: Array
    y: Array
    w: Array
    cell: npt.NDArray[np.intp]  # [K] cell index of each row

    @property
    def total(self) -> float:
        return float(self.w.sum())

    @property
    def positives(self) -> float:
        return float(np.dot(self.w, self.y))


@dataclass(slots=True)
class TaskStats:
    """The three sums of one task, each [cells, bins]; rows of new cells are appended as they appear."""

    weight: Array
    label_sum: Array
    logit_sum: Array

    @classmethod
    def empty(cls, cells: int, bins: int) -> TaskStats:
        return cls(*(np.zeros((cells, bins), dtype=np.float64) for _ in range(3)))

    def grow(self, cells: int) -> None:
        extra = cells - self.weight.shape[0]
        if extra > 0:
            pad = np.zeros((extra, self.weight.shape[1]), dtype=np.float64)
            self.weight = np.vstack([self.weight, pad])
            self.label_sum = np.vstack([self.label_sum, pad])
            self.logit_sum = np.vstack([self.logit_sum, pad])

    def rows(self, cells: npt.NDArray[np.intp] | None = None) -> BinnedRows:
        """The non-empty bins (of the given cells, or all) as weighted rows, cell-major, bins ascending."""
        weight, label_sum, logit_sum = self.weight, self.label_sum, self.logit_sum
        index = np.arange(weight.shape[0]) if cells is None else np.asarray(cells, dtype=np.intp)
        w = weight[index]
        cell_of = np.broadcast_to(index[:, None], w.shape)
        keep = w > 0
        w_kept = w[keep]
        return BinnedRows(
            z=logit_sum[index][keep] / w_kept, y=np.clip(label_sum[index][keep] / w_kept, 0.0, 1.0), w=w_kept,
            cell=cell_of[keep].astype(np.intp),
        )

    def pooled(self) -> BinnedRows:
        """All cells summed per bin (the global calibrator's input)."""
        w = self.weight.sum(axis=0)
        keep = w > 0
        return BinnedRows(
            z=self.logit_sum.sum(axis=0)[keep] / w[keep], y=np.clip(self.label_sum.sum(axis=0)[keep] / w[keep], 0, 1),
            w=w[keep], cell=np.zeros(int(keep.sum()), dtype=np.intp),
        )


@dataclass(slots=True)
class CalibrationStats:
    """Sufficient statistics of every task, keyed by segment cell; see the module docstring."""

    tasks: tuple[str, ...]
    segment_features: tuple[str, ...]
    grid: LogitGrid = field(default_factory=LogitGrid)
    cells: list[Cell] = field(default_factory=list)
    per_task: dict[str, TaskStats] = field(default_factory=dict)
    _cell_ids: dict[Cell, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for task in self.tasks:
            self.per_task.setdefault(task, TaskStats.empty(len(self.cells), self.grid.bins))
        self._cell_ids = {cell: i for i, cell in enumerate(self.cells)}

    def cell_ids(self, segment_values: Mapping[str, npt.NDArray[np.generic]], rows: int) -> npt.NDArray[np.intp]:
        """Cell index per row from the segment columns ([R] values each), registering new cells."""
        codes, dictionaries = [], []
        for feature in self.segment_features:
            dictionary, inverse = np.unique(np.asarray(segment_values[feature]).astype(str), return_inverse=True)
            codes.append(inverse.reshape(-1).astype(np.int64))
            dictionaries.append([str(v) for v in dictionary.tolist()])
        return self.cell_ids_encoded(codes, dictionaries, rows)

    def cell_ids_encoded(
        self, codes: Sequence[npt.NDArray[np.int64]], dictionaries: Sequence[Sequence[str]], rows: int
    ) -> npt.NDArray[np.intp]:
        """Cell index per row from dictionary-encoded segment columns: codes[j] [R] index dictionaries[j]."""
        if not self.segment_features:
            cell = self._register(())
            self._grow()
            return np.full(rows, cell, dtype=np.intp)
        combined = np.zeros(rows, dtype=np.int64)
        for column, dictionary in zip(codes, dictionaries, strict=True):
            combined = combined * len(dictionary) + column  # mixed radix: one integer per combination
        # Few distinct combinations per batch: decode and look each up once, then index.
        unique, inverse = np.unique(combined, return_inverse=True)
        ids = np.empty(unique.size, dtype=np.intp)
        for k, key in enumerate(unique.tolist()):
            parts = []
            for dictionary in reversed(dictionaries):
                key, code = divmod(key, len(dictionary))
                parts.append(dictionary[code])
            ids[k] = self._register(tuple(reversed(parts)))
        self._grow()  # once per batch: growing per new cell would copy the tables again and again
        return ids[inverse.reshape(-1)]

    def _register(self, cell: Cell) -> int:
        """Id of a cell, new cells appended; call `_grow` after a run of registrations."""
        known = self._cell_ids.get(cell)
        if known is not None:
            return known
        if len(self.cells) >= MAX_CELLS:
            raise ValueError(
                f"more than {MAX_CELLS} combinations of the segment features {list(self.segment_features)}"
            )
        self._cell_ids[cell] = len(self.cells)
        self.cells.append(cell)
        return len(self.cells) - 1

    def _grow(self) -> None:
        for stats in self.per_task.values():
            stats.grow(len(self.cells))

    def add(self, task: str, logits: Array, labels: Array, weights: Array, cells: npt.NDArray[np.intp]) -> None:
        """Accumulate rows of one task: logits, labels, weights (0 = masked) and cell ids, all [R]."""
        stats = self.per_task[task]
        bins = self.grid.bins
        w = np.asarray(weights, dtype=np.float64)
        observed = w > 0
        z = np.where(observed, logits, 0.0)  # a masked row's logit and label may be anything, even NaN
        y = np.where(observed, labels, 0.0)
        flat = cells * bins + self.grid.index(z)
        size = len(self.cells) * bins
        stats.weight += np.bincount(flat, weights=w, minlength=size).reshape(-1, bins)
        stats.label_sum += np.bincount(flat, weights=w * y, minlength=size).reshape(-1, bins)
        stats.logit_sum += np.bincount(flat, weights=w * z, minlength=size).reshape(-1, bins)

    def merge(self, other: CalibrationStats) -> CalibrationStats:
        """Add `other`'s sums into these (same tasks, features and grid); cells are matched by value."""
        if (other.tasks, other.segment_features, other.grid) != (self.tasks, self.segment_features, self.grid):
            raise ValueError("statistics with different tasks, segment features or grids do not merge")
        ids = np.array([self._register(cell) for cell in other.cells], dtype=np.intp)
        self._grow()
        for task in self.tasks:
            mine, theirs = self.per_task[task], other.per_task[task]
            np.add.at(mine.weight, ids, theirs.weight)
            np.add.at(mine.label_sum, ids, theirs.label_sum)
            np.add.at(mine.logit_sum, ids, theirs.logit_sum)
        return self

    def values_of(self, feature: str) -> list[str]:
        """Distinct values of one segment feature seen in the cells, sorted."""
        j = self.segment_features.index(feature)
        return sorted({cell[j] for cell in self.cells})

    def cell_values(self, feature: str) -> Sequence[str]:
        """The feature's value in each cell, [cells]."""
        j = self.segment_features.index(feature)
        return [cell[j] for cell in self.cells]
