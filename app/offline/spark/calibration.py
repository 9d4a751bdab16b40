"""`calibrate fit --engine spark`: Spark computes the mergeable statistics, the driver runs the local fit.

Two native Spark jobs, no Python on the executors:

1. the statistics: per row and task the local reader's z, y, w (`SparkPredictions`), the SplitMix64
   hold-out split of the key (`with_holdout`, bit for bit the local one), the `LogitGrid` bin of the
   fit rows, then `task_sums`: one `groupBy(task, cells..., bin).agg(sum)`, which is
   `CalibrationStats.add` + `merge`. The same job counts rows, held-out rows, null keys and bad rows;
   the driver fills a `CalibrationStats` from the [tasks x cells x bins] sums;
2. the held-out rows (the `--holdout` fraction, observed rows only) reach the driver as Arrow for
   the exact sorted metrics (AUC, equal-mass ECE), in input order: the driver's memory grows with
   the held-out fraction, as on the local path.

The driver then runs `fit_collected`, the code `--engine local` runs. The split needs an integer key
column (default `group_id`): a distributed read has no row numbers. Sums are float64 in another
order than on one machine, so parameters agree to ~1e-12, not bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from app.errors import ArtifactError
from app.offline.calibration.build import MIN_HELD_OUT_POSITIVES, FitOutcome, check_segments, fit_collected
from app.offline.calibration.collect import Collected, HeldOut
from app.offline.calibration.fit import FitConfig
from app.offline.calibration.source import TaskColumns, encode_column, find_tasks
from app.offline.calibration.stats import CalibrationStats, LogitGrid
from app.offline.spark.errors import spark_errors
from app.offline.spark.predictions import SparkPredictions
from app.offline.spark.split import with_holdout
from app.offline.spark.sums import TASK, logit_bin, task_sums

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import Column, DataFrame

    from app.artifacts.manifest import ModelManifest

__all__ = ["collect_on_spark", "fit_on_spark"]

HELD = "__fusionrank_held"
ROW = "__fusionrank_row"


def _check_key(frame: DataFrame, key: str | None, origin: str) -> str:
    from pyspark.sql.types import IntegralType

    if key is None or key not in frame.columns:
        raise ArtifactError(origin, key or "--holdout-key", "the Spark engine splits by an integer key column,"
                            " and the input has none", "give --holdout-key COLUMN (e.g. group_id)")
    if not isinstance(frame.schema[key].dataType, IntegralType):
        raise ArtifactError(origin, key, f"hold-out key column has type {frame.schema[key].dataType}",
                            "give an integer key (e.g. a request id)")
    return key


# Bin codes of the rows that are counted but not summed (`task_sums` sums bins >= 0 only).
MASKED, HELD_OUT, NULL_KEY, BAD = -1, -2, -3, -4


def _statistics_columns(predictions: SparkPredictions, key: str, grid: LogitGrid) -> dict[str, dict[str, Column]]:
    """Per task: the bin of a fit row (as `CalibrationStats.add` bins it), or the code of a row not fitted on.

    A fit row has weight 1 (masks are 0 or 1), so a bin's weight is its row count and its label and
    logit sums are the sums of y and z.
    """
    from pyspark.sql import functions as F

    out = {}
    for columns in predictions.tasks:
        task = predictions.task(columns)
        code = (F.when(predictions.bad(columns), F.lit(BAD)).when(F.col(key).isNull(), F.lit(NULL_KEY))
                .when(F.col(HELD), F.lit(HELD_OUT)).when(F.isnan(task.w) | (task.w <= 0.0), F.lit(MASKED))
                .otherwise(logit_bin(task.z, grid)))
        out[columns.task] = {"bin": code, "label_sum": task.y, "logit_sum": task.z}
    return out


def collect_on_spark(
    frame: DataFrame, tasks: Sequence[TaskColumns], segments: tuple[str, ...], *, holdout_fraction: float,
    key: str | None, origin: str, grid: LogitGrid | None = None,
) -> Collected:
    """Spark's counterpart of `collect`: the same statistics and held-out rows (see the module docstring)."""
    grid = grid or LogitGrid()
    key = _check_key(frame, key, origin)
    predictions = SparkPredictions(frame, tasks, segments, origin)
    cells = _cell_names(segments)
    rows = with_holdout(frame.select("*", *predictions.segment_values(cells)), key, holdout_fraction, HELD)
    sums = task_sums(rows, cells, _statistics_columns(predictions, key, grid), origin)
    if cells:  # cells registered in sorted order of their values, whatever order Spark's groups come in
        sums = sums.sort_by([(c, "ascending") for c in cells])
    task_of, bins, counts = (sums.column(n).to_numpy(zero_copy_only=False) for n in (TASK, "bin", "rows"))
    bad = [c for c in tasks if counts[(task_of == c.task) & (bins == BAD)].sum()]
    if bad:
        predictions.raise_first_problem(bad, key)
    first = task_of == tasks[0].task
    if counts[first & (bins == NULL_KEY)].sum():
        raise ArtifactError(origin, key, f"the hold-out key is null in {counts[first & (bins == NULL_KEY)].sum()}"
                            " rows", "give every row its key")
    stats = CalibrationStats(tasks=tuple(t.task for t in tasks), segment_features=segments, grid=grid)
    cell = _cell_ids(stats, sums, cells)
    for name in stats.tasks:
        sel = (task_of == name) & (bins >= 0)
        table = stats.per_task[name]
        table.weight[cell[sel], bins[sel]] = counts[sel]
        table.label_sum[cell[sel], bins[sel]] = sums.column("label_sum").to_numpy()[sel]
        table.logit_sum[cell[sel], bins[sel]] = sums.column("logit_sum").to_numpy()[sel]
    out = Collected(stats=stats, held_out={}, rows=int(counts[first].sum()),
                    held_out_rows=int(counts[first & (bins == HELD_OUT)].sum()), key=key)
    out.held_out.update(_held_out(rows, predictions, stats, cells, origin))
    return out


def _held_out(
    rows: DataFrame, predictions: SparkPredictions, stats: CalibrationStats, cells: Sequence[str], origin: str,
) -> dict[str, HeldOut]:
    """Each task's held-out observed rows (z, y, cell), in input order."""
    from pyspark.sql import functions as F

    selected: list[Column | str] = [F.col(ROW), *cells]
    for i, columns in enumerate(predictions.tasks):
        task = predictions.task(columns)
        selected += [task.z.alias(f"z{i}"), task.y.alias(f"y{i}"), task.w.alias(f"w{i}")]
    # The row number is nondeterministic: Spark then cannot push the filter below it and inline the
    # hash's projections into one huge condition. The filter must stay after it.
    numbered = rows.withColumn(ROW, F.monotonically_increasing_id())
    with spark_errors(origin):
        table = numbered.filter(F.col(HELD)).select(*selected).toArrow()
    order = np.argsort(table.column(ROW).to_numpy(), kind="stable")
    cell = _cell_ids(stats, table, cells)[order]
    out = {}
    for i, columns in enumerate(predictions.tasks):
        z, y, w = (table.column(f"{v}{i}").to_numpy()[order] for v in "zyw")
        keep = w > 0
        out[columns.task] = HeldOut(z=z[keep], y=y[keep], cell=cell[keep])
    return out


def _cell_names(segments: Sequence[str]) -> list[str]:
    return [f"__fusionrank_segment_{j}" for j in range(len(segments))]


def _cell_ids(stats: CalibrationStats, table: pa.Table, cells: Sequence[str]) -> npt.NDArray[np.intp]:
    """The cell of every row of `table` (its segment value columns `cells`), registering new cells."""
    if table.num_rows == 0:
        return np.zeros(0, dtype=np.intp)
    batch = table.select(list(cells)).combine_chunks().to_batches()[0]
    encoded = [encode_column(batch, c) for c in cells]
    return stats.cell_ids_encoded([c for c, _ in encoded], [d for _, d in encoded], table.num_rows)


def fit_on_spark(
    frame: DataFrame, config: FitConfig, *, version: str, origin: str, name: str,
    manifest: ModelManifest | None = None, holdout_fraction: float = 0.2, holdout_key: str | None = "group_id",
    min_held_out_positives: int = MIN_HELD_OUT_POSITIVES,
) -> FitOutcome:
    """`fit_predictions` on Spark: same checks, statistics from Spark, the same driver fit."""
    check_segments(config, manifest, origin)
    tasks = find_tasks(frame.columns, origin, need_labels=True, only=manifest.task_names() if manifest else None)
    collected = collect_on_spark(frame, tasks, config.segments, holdout_fraction=holdout_fraction, key=holdout_key,
                                 origin=origin)
    return fit_collected(collected, tasks, config, version=version, manifest=manifest, origin=origin, name=name,
                         min_held_out_positives=min_held_out_positives)
