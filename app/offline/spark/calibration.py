"""`calibrate fit --engine spark`: Spark computes the mergeable statistics, the driver runs the local fit.

Every Spark partition streams its Arrow batches through the local path's own code (`raw_logits`,
`observed`, `encode_column`, `holdout_mask`, `CalibrationStats.add`: the same validation, hold-out
split and bin edges) into one partial `CalibrationStats`, and emits its non-empty (task, cell, bin)
sums (`mapInArrow`). Spark sums the partials by key (`groupBy().agg(sum)`), which is exactly
`CalibrationStats.merge`; the driver receives [tasks x cells x bins] sums, never the fit rows, and
runs `fit_collected`, the code `--engine local` runs. The held-out rows (the `--holdout` fraction,
observed rows only) reach the driver as Arrow for the exact sorted metrics (AUC, equal-mass ECE), in
their input order: the driver's memory grows with the held-out fraction, as on the local path.

The split needs an integer key column (default `group_id`): a distributed read has no row numbers.
Sums are float64 in another order than on one machine, so parameters agree to ~1e-12, not bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from app.errors import ArtifactError
from app.offline.calibration.build import FitOutcome, check_segments, fit_collected
from app.offline.calibration.collect import Collected, HeldOut, holdout_mask
from app.offline.calibration.fit import FitConfig
from app.offline.calibration.source import TaskColumns, encode_column, find_tasks, observed, raw_logits
from app.offline.calibration.stats import CalibrationStats, LogitGrid
from app.offline.spark.errors import spark_errors

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame

    from app.artifacts.manifest import ModelManifest

__all__ = ["collect_on_spark", "fit_on_spark"]

ROW = "__fusionrank_row"
STAT, HELD, COUNT = 0, 1, 2  # kinds of partial rows


def _segment_columns(segments: Sequence[str]) -> list[str]:
    return [f"segment_{j}" for j in range(len(segments))]


def _partial_schema(segments: Sequence[str]) -> str:
    cells = "".join(f"{c} string, " for c in _segment_columns(segments))
    # STAT: a, b, c = sum w, sum w*y, sum w*z (bin -1: a cell seen, no sums); HELD: a = z, b = y, row;
    # COUNT: a = rows, b = held-out rows of the partition.
    return f"kind int, task string, {cells}bin int, a double, b double, c double, row long"


def _partials(
    tasks: Sequence[TaskColumns], segments: tuple[str, ...], *, fraction: float, key: str, grid: LogitGrid,
    origin: str,
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The per-partition function of `mapInArrow` (runs on the executors)."""
    names = tuple(t.task for t in tasks)

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        stats = CalibrationStats(tasks=names, segment_features=segments, grid=grid)
        rows = held_rows = 0
        for batch in batches:
            n = batch.num_rows
            keys = batch.column(key)
            if keys.null_count:
                raise ArtifactError(origin, key, "the hold-out key has nulls", "give every row its key")
            held = holdout_mask(keys.to_numpy(zero_copy_only=False), fraction)
            encoded = [encode_column(batch, s) for s in segments]
            try:
                cells = stats.cell_ids_encoded([c for c, _ in encoded], [d for _, d in encoded], n)
            except ValueError as exc:
                raise ArtifactError(origin, ", ".join(segments), str(exc),
                                    "segment by fewer or lower-cardinality features (not ids)") from None
            order = batch.column(ROW).to_numpy(zero_copy_only=False)
            cell_values = [np.array([cell[j] for cell in stats.cells], dtype=object) for j in range(len(segments))]
            for columns in tasks:
                z = raw_logits(batch, columns, origin, 0)
                y, w = observed(batch, columns, z, origin, 0)
                stats.add(columns.task, z, y, np.where(held, 0.0, w), cells)
                keep = np.flatnonzero(held & (w > 0))
                if keep.size:
                    yield _batch(pa, HELD, columns.task, [v[cells[keep]] for v in cell_values],
                                 np.full(keep.size, -1), z[keep], y[keep], np.zeros(keep.size), order[keep])
            rows += n
            held_rows += int(held.sum())
        yield from _stat_batches(pa, stats)
        one = np.ones(1)
        yield _batch(pa, COUNT, names[0], [np.array([""], dtype=object)] * len(segments), np.full(1, -1),
                     one * rows, one * held_rows, one * 0, np.zeros(1, dtype=np.int64))

    return run


def _stat_batches(pa_module: object, stats: CalibrationStats) -> Iterator[pa.RecordBatch]:
    """The partition's non-empty sums, one batch per task, plus every cell it saw (bin -1)."""
    width = len(stats.segment_features)
    cell_values = [np.array([cell[j] for cell in stats.cells], dtype=object) for j in range(width)]
    cells = len(stats.cells)
    yield _batch(pa_module, STAT, stats.tasks[0], cell_values, np.full(cells, -1), np.zeros(cells),
                 np.zeros(cells), np.zeros(cells), np.zeros(cells, dtype=np.int64))
    for task in stats.tasks:
        table = stats.per_task[task]
        cell, bins = np.nonzero(table.weight > 0)
        yield _batch(pa_module, STAT, task, [v[cell] for v in cell_values], bins, table.weight[cell, bins],
                     table.label_sum[cell, bins], table.logit_sum[cell, bins], np.zeros(cell.size, dtype=np.int64))


def _batch(
    pa_module: object, kind: int, task: str, segment_values: Sequence[npt.NDArray[np.object_]],
    bins: npt.NDArray[np.integer], a: npt.NDArray[np.float64], b: npt.NDArray[np.float64],
    c: npt.NDArray[np.float64], row: npt.NDArray[np.integer],
) -> pa.RecordBatch:
    import pyarrow as pa

    n = len(bins)
    arrays = [pa.array(np.full(n, kind, dtype=np.int32)), pa.array([task] * n, type=pa.string())]
    arrays += [pa.array(v.tolist(), type=pa.string()) for v in segment_values]
    arrays += [pa.array(np.asarray(bins, dtype=np.int32)), pa.array(np.asarray(a, dtype=np.float64)),
               pa.array(np.asarray(b, dtype=np.float64)), pa.array(np.asarray(c, dtype=np.float64)),
               pa.array(np.asarray(row, dtype=np.int64))]
    names = ["kind", "task", *(f"segment_{j}" for j in range(len(segment_values))), "bin", "a", "b", "c", "row"]
    return pa.RecordBatch.from_arrays(arrays, names=names)


def collect_on_spark(
    frame: DataFrame, tasks: Sequence[TaskColumns], segments: tuple[str, ...], *, holdout_fraction: float,
    key: str | None, origin: str, grid: LogitGrid | None = None,
) -> Collected:
    """Spark's counterpart of `collect`: the same statistics and held-out rows (see the module docstring)."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F
    from pyspark.sql.types import IntegralType

    grid = grid or LogitGrid()
    missing = [s for s in segments if s not in frame.columns]
    if missing:
        raise ArtifactError(origin, missing[0], f"segment column {missing[0]!r} is missing",
                            f"add it, or pick from the input's columns {frame.columns}")
    if key is None or key not in frame.columns:
        raise ArtifactError(origin, key or "--holdout-key", "the Spark engine splits by an integer key column,"
                            " and the input has none", "give --holdout-key COLUMN (e.g. group_id)")
    if not isinstance(frame.schema[key].dataType, IntegralType):
        raise ArtifactError(origin, key, f"hold-out key column has type {frame.schema[key].dataType}",
                            "give an integer key (e.g. a request id)")
    columns = sorted({c for t in tasks for c in (t.raw, t.label, t.mask) if c is not None} | set(segments) | {key})
    source = frame.select(*columns).withColumn(ROW, F.monotonically_increasing_id())  # input order, for ties
    partials = source.mapInArrow(
        _partials(tasks, segments, fraction=holdout_fraction, key=key, grid=grid, origin=origin),
        _partial_schema(segments),
    ).persist(StorageLevel.MEMORY_AND_DISK)
    cells = _segment_columns(segments)
    with spark_errors(origin):
        try:
            sums = (partials.filter(F.col("kind") == STAT).groupBy("task", *cells, "bin")
                    .agg(F.sum("a").alias("a"), F.sum("b").alias("b"), F.sum("c").alias("c")).toArrow())
            counts = partials.filter(F.col("kind") == COUNT).agg(F.sum("a"), F.sum("b")).collect()[0]
            held = partials.filter(F.col("kind") == HELD).select("task", *cells, "a", "b", "row").toArrow()
        finally:
            partials.unpersist()
    stats = CalibrationStats(tasks=tuple(t.task for t in tasks), segment_features=segments, grid=grid)
    cell = _cell_ids(stats, sums, cells)  # cells registered in sorted order of their values
    task_of, bins = sums.column("task").to_numpy(zero_copy_only=False), sums.column("bin").to_numpy()
    a, b, c = (sums.column(n).to_numpy() for n in ("a", "b", "c"))
    for name in stats.tasks:
        sel = (task_of == name) & (bins >= 0)
        table = stats.per_task[name]
        table.weight[cell[sel], bins[sel]] = a[sel]
        table.label_sum[cell[sel], bins[sel]] = b[sel]
        table.logit_sum[cell[sel], bins[sel]] = c[sel]
    out = Collected(stats=stats, held_out={}, rows=round(counts[0] or 0), held_out_rows=round(counts[1] or 0), key=key)
    held_cell = _cell_ids(stats, held, cells)
    held_task = held.column("task").to_numpy(zero_copy_only=False)
    z, y, row = (held.column(n).to_numpy() for n in ("a", "b", "row"))
    for name in stats.tasks:
        sel = np.flatnonzero(held_task == name)
        sel = sel[np.argsort(row[sel], kind="stable")]
        out.held_out[name] = HeldOut(z=z[sel], y=y[sel], cell=held_cell[sel])
    return out


def _cell_ids(stats: CalibrationStats, table: pa.Table, cells: Sequence[str]) -> npt.NDArray[np.intp]:
    codes, dictionaries = [], []
    for column in cells:
        values = np.asarray(table.column(column).to_numpy(zero_copy_only=False), dtype=str)
        dictionary, inverse = np.unique(values, return_inverse=True)
        codes.append(inverse.reshape(-1).astype(np.int64))
        dictionaries.append([str(v) for v in dictionary.tolist()])
    return stats.cell_ids_encoded(codes, dictionaries, table.num_rows)


def fit_on_spark(
    frame: DataFrame, config: FitConfig, *, version: str, origin: str, name: str,
    manifest: ModelManifest | None = None, holdout_fraction: float = 0.2, holdout_key: str | None = "group_id",
) -> FitOutcome:
    """`fit_predictions` on Spark: same checks, statistics from Spark, the same driver fit."""
    check_segments(config, manifest, origin)
    tasks = find_tasks(frame.columns, origin, need_labels=True, only=manifest.task_names() if manifest else None)
    collected = collect_on_spark(frame, tasks, config.segments, holdout_fraction=holdout_fraction, key=holdout_key,
                                 origin=origin)
    return fit_collected(collected, tasks, config, version=version, manifest=manifest, origin=origin, name=name)
