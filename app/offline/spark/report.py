"""`calibrate report --engine spark`: the local report's tables, the row work done by Spark.

The local report (`app.offline.calibration.report`) streams the file twice into one `TaskTables`
per task; this module fills the same tables from Spark and renders them with the same code
(`render_report`), so the two reports are the same report. Per task and observed row, the executors
run what only the service's code can do, in Arrow batches (`mapInArrow`): the local reader's checks
(`raw_logits`, `observed`), the calibration file applied with the service's apply, and the fine
histogram bin of both predictions (`StreamedMetrics.bin_of`, 2^16 bins). The rest is native:

1. sums: the rows stacked per prediction stream (before, after) and per segment feature, then one
   `groupBy(task, kind, bin, width bucket, value).agg(count, sum, min, max)`, the same
   stack-then-group aggregation `calibrate fit` runs, gives every pass-1 sum of `StreamedMetrics`
   (per bin: count, Σy, Σp, min p, max p; Σp and Σy per equal-width bucket; the logloss and Brier
   terms) and the segment tables' sums (count, Σy, Σp before, Σp after per value);
2. ranks: a second pass keeps only the rows of the bins `StreamedMetrics.kept_bins` names (bucket
   edges, and the AUC's mixed bins within its budget), in input order, for the exact ranks.

The driver holds the histograms (a few MB per task) and the kept rows, as the local report does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from app.offline.calibration.apply import OfflineCalibration, segment_vocabularies
from app.offline.calibration.report import TaskTables, render_report, report_features
from app.offline.calibration.source import MISSING, TaskColumns, encode_column, find_tasks, observed, raw_logits
from app.offline.calibration.stream_metrics import StreamedMetrics
from app.offline.spark.errors import spark_errors
from app.offline.spark.predictions import SparkPredictions
from app.serving.calibration import sigmoid

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import Column, DataFrame

    from app.artifacts.calibration import CalibrationFile
    from app.artifacts.manifest import ModelManifest

__all__ = ["report_on_spark"]

ROW = "__fusionrank_row"
_EPS = 1e-15  # as StreamedMetrics' logloss clip
_WIDTH_EDGES = np.linspace(0.0, 1.0, 11)[1:-1]  # StreamedMetrics' ten equal-width buckets
_PARTITION_SHIFT = 33  # monotonically_increasing_id: partition index above bit 33, row in partition below
Kept = dict[int, tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]]  # task index -> (before, after) bins


def _value(i: int) -> str:
    return f"__fusionrank_value_{i}"


def _scored_schema(features: Sequence[str]) -> str:
    values = "".join(f", {_value(i)} string" for i in range(len(features)))
    return f"task int, row long, y double, before double, after double, bin_before int, bin_after int{values}"


def _scorer(
    calibration: CalibrationFile, tasks: Sequence[TaskColumns], vocabularies: Mapping[str, Sequence[str]],
    features: Sequence[str], origin: str, kept: Kept | None,
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The per-partition function of `mapInArrow`: per task the observed rows' predictions before and after
    calibration and their histogram bins (with `kept`: only the rows of kept bins)."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        applier = OfflineCalibration(calibration, [t.task for t in tasks], vocabularies)
        binner = StreamedMetrics()
        for batch in batches:
            if batch.num_rows == 0:
                continue
            row = batch.column(ROW).to_numpy()
            # Errors name the row as the local reader does, within the Spark partition that holds it.
            where = f"{origin}, Spark partition {int(row[0]) >> _PARTITION_SHIFT}"
            first = int(row[0]) & ((1 << _PARTITION_SHIFT) - 1)
            logits = np.stack([raw_logits(batch, t, where, first) for t in tasks], axis=1)
            categorical = np.zeros((batch.num_rows, len(applier.features)), dtype=np.int64)
            for j, feature in enumerate(applier.features):
                codes, dictionary = encode_column(batch, feature)
                categorical[:, j] = applier.codes(feature, dictionary)[codes]
            p = applier.apply(np.nan_to_num(logits), categorical)
            values = [batch.column(f).cast(pa.string()) for f in features]
            for t, columns in enumerate(tasks):
                y, w = observed(batch, columns, logits[:, t], where, first)
                keep = w > 0
                before, after = sigmoid(logits[keep, t]), p[keep, t]
                bins = binner.bin_of(before), binner.bin_of(after)
                index = np.flatnonzero(keep)
                if kept is not None:
                    mine = kept[t][0][bins[0]] | kept[t][1][bins[1]]
                    before, after, bins, index = before[mine], after[mine], (bins[0][mine], bins[1][mine]), index[mine]
                if index.size == 0:
                    continue
                taken = pa.array(index)
                arrays = [pa.array(np.full(index.size, t, dtype=np.int32)), pa.array(row[index]),
                          pa.array(y[index]), pa.array(before), pa.array(after),
                          pa.array(bins[0].astype(np.int32)), pa.array(bins[1].astype(np.int32)),
                          *(v.take(taken) for v in values)]
                names = ["task", "row", "y", "before", "after", "bin_before", "bin_after",
                         *(_value(i) for i in range(len(features)))]
                yield pa.RecordBatch.from_arrays(arrays, names=names)

    return run


def _width_bucket(p: Column) -> Column:
    """`np.searchsorted(edges, p, side="left")`: the number of equal-width edges below p."""
    from pyspark.sql import functions as F

    return sum((F.when(p > F.lit(float(e)), 1).otherwise(0) for e in _WIDTH_EDGES), start=F.lit(0))


def _stream_sums(scored: DataFrame, features: Sequence[str]) -> DataFrame:
    """Pass 1 as one native aggregation over the stacked rows (see the module docstring)."""
    from pyspark.sql import functions as F

    y = F.col("y")
    kinds = {}
    for kind, column in enumerate(("before", "after")):
        p = F.col(column)
        q = F.least(F.greatest(p, F.lit(_EPS)), F.lit(1.0 - _EPS))
        kinds[f"k{kind}"] = F.struct(
            F.lit(kind).alias("kind"), F.col(f"bin_{column}").alias("bin"), _width_bucket(p).alias("width"),
            F.lit(None).cast("string").alias("value"), p.alias("p"), F.lit(0.0).alias("p2"),
            (-(y * F.log(q) + (1.0 - y) * F.log1p(-q))).alias("logloss"), ((p - y) * (p - y)).alias("brier"))
    for j in range(len(features)):  # kind 2 + j: the segment table of feature j, Σp before and after
        kinds[f"k{2 + j}"] = F.struct(
            F.lit(2 + j).alias("kind"), F.lit(-1).alias("bin"), F.lit(-1).alias("width"),
            F.col(_value(j)).alias("value"), F.col("before").alias("p"), F.col("after").alias("p2"),
            F.lit(0.0).alias("logloss"), F.lit(0.0).alias("brier"))
    wide = scored.select("task", "y", *(s.alias(k) for k, s in kinds.items()))
    stacked = wide.unpivot(["task", "y"], list(kinds), "__fusionrank_slot", "v").select("task", "y", "v.*")
    return stacked.groupBy("task", "kind", "bin", "width", "value").agg(
        F.count(F.lit(1)).alias("count"), F.sum("y").alias("positives"), F.sum("p").alias("sum_p"),
        F.min("p").alias("low"), F.max("p").alias("high"), F.sum("p2").alias("sum_p2"),
        F.sum("logloss").alias("logloss"), F.sum("brier").alias("brier"))


def _summed(index: npt.NDArray[np.intp], values: npt.NDArray[np.generic], size: int = 0) -> npt.NDArray[np.float64]:
    """values [K] summed by index [K] into float64 [max(size, index.max() + 1)]."""
    return np.asarray(np.bincount(index, weights=values.astype(np.float64), minlength=size), dtype=np.float64)


def _fill(tables: dict[str, TaskTables], tasks: Sequence[TaskColumns], features: Sequence[str],
          sums: pa.Table) -> None:
    """Pass 1 of every table from the aggregated sums."""
    column = {n: sums.column(n).to_numpy(zero_copy_only=False) for n in sums.column_names}
    for t, columns in enumerate(tasks):
        table = tables[columns.task]
        for kind, stream in enumerate((table.before, table.after)):
            sel = (column["task"] == t) & (column["kind"] == kind)
            bins, where = np.unique(column["bin"][sel].astype(np.intp), return_inverse=True)
            low, high = np.full(bins.size, np.inf), np.full(bins.size, -np.inf)
            np.minimum.at(low, where, column["low"][sel])
            np.maximum.at(high, where, column["high"][sel])
            stream.add_binned(bins, _summed(where, column["count"][sel]), _summed(where, column["positives"][sel]),
                              _summed(where, column["sum_p"][sel]), low, high)
            width = column["width"][sel].astype(np.intp)
            stream.add_totals(_summed(width, column["sum_p"][sel], len(_WIDTH_EDGES) + 1),
                              _summed(width, column["positives"][sel], len(_WIDTH_EDGES) + 1),
                              float(column["logloss"][sel].sum()), float(column["brier"][sel].sum()))
        for j, feature in enumerate(features):
            sel = (column["task"] == t) & (column["kind"] == 2 + j)
            values = [MISSING if v is None else str(v) for v in column["value"][sel]]
            totals = np.stack([column["count"][sel].astype(np.float64), column["positives"][sel],
                               column["sum_p"][sel], column["sum_p2"][sel]], axis=1)
            table.segments[feature].add_totals(values, totals)


def _fill_kept(tables: dict[str, TaskTables], tasks: Sequence[TaskColumns], rows: pa.Table) -> None:
    """Pass 2 of every stream from the kept rows."""
    column = {n: rows.column(n).to_numpy() for n in ("task", "row", "y", "before", "after")}
    for t, columns in enumerate(tasks):
        mine = column["task"] == t
        for name, stream in (("before", tables[columns.task].before), ("after", tables[columns.task].after)):
            sel = mine & stream.kept_bins()[stream.bin_of(column[name])]
            stream.add_kept(column[name][sel], column["y"][sel], column["row"][sel])


def report_on_spark(
    calibration: CalibrationFile, frame: DataFrame, out: Path, *, origin: str,
    manifest: ModelManifest | None = None, extra_segments: Sequence[str] = (), buckets: int = 10,
) -> Path:
    """`write_report` on Spark: the same `report.md` and reliability PNGs (see the module docstring)."""
    from pyspark.sql import functions as F

    tasks = find_tasks(frame.columns, origin, need_labels=True, only=list(calibration.tasks))
    features = report_features(calibration, extra_segments)
    vocabularies = segment_vocabularies(calibration, manifest)
    SparkPredictions(frame, tasks, sorted(set(features) | set(vocabularies)), origin)  # schema checks
    needed = {c for t in tasks for c in (t.raw, t.label, t.mask) if c is not None} | set(features) | set(vocabularies)
    numbered = frame.select(*sorted(needed)).withColumn(ROW, F.monotonically_increasing_id())

    def scored(kept: Kept | None) -> DataFrame:
        return numbered.mapInArrow(_scorer(calibration, tasks, vocabularies, features, origin, kept),
                                   _scored_schema(features))

    tables = {t.task: TaskTables.empty(features, buckets) for t in tasks}
    with spark_errors(origin):
        sums = _stream_sums(scored(None), features).toArrow()
    _fill(tables, tasks, features, sums)
    kept = {t: (tables[c.task].before.kept_bins(), tables[c.task].after.kept_bins()) for t, c in enumerate(tasks)}
    with spark_errors(origin):
        rows = scored(kept).select("task", "row", "y", "before", "after").toArrow()
    _fill_kept(tables, tasks, rows)
    return render_report(calibration, tables, out, predictions=origin, buckets=buckets)
