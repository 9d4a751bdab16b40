"""`fusionrank logs join --engine spark`: the join of `app.offline.logs.join` as Spark DataFrame operations.

The served log is read with `recursiveFileLookup` (the surface column comes from the files; Spark skips
the hidden temporary files as pyarrow does), outcomes as Parquet or CSV; label windows come from the
same manifests. The joined rows never go through the driver: one executor task receives them as Arrow
batches (`mapInArrow` after `repartition(1)`, so the join itself stays parallel) and streams them into one
Parquet file with the joined-log schema and metadata (the same file the local engine writes), under a
hidden temporary name renamed when complete. Its memory is one Arrow batch
(`spark.sql.execution.arrow.maxRecordsPerBatch`); `out` must be a path the executors can write (a local
path in local mode, a shared file system on a cluster). The driver only collects counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from app.errors import ArtifactError
from app.offline.logs.inputs import LabelWindows, served_folder
from app.offline.logs.join import ATTRIBUTE_MAPS, JoinSummary, joined_schema, write_joined

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = ["join_on_spark"]


def _read_outcomes(spark: SparkSession, path: Path) -> DataFrame:
    from pyspark.sql import functions as F

    if path.is_file() and path.suffix.lower() == ".csv":
        frame = spark.read.option("header", "true").csv(str(path))
    else:
        folder = path / "outcomes" if (path / "outcomes").is_dir() else path
        frame = spark.read.option("recursiveFileLookup", "true").parquet(str(folder))
    for name in ("request_id", "candidate_id", "task", "label", "event_time"):
        if name not in frame.columns:
            raise ArtifactError(path, name, "outcomes need request_id, candidate_id, task, label, event_time",
                                f"add a {name} column")
    return frame.select(
        F.col("request_id").cast("string").alias("request_id"),
        F.col("candidate_id").cast("string").alias("candidate_id"),
        F.col("task").cast("string").alias("task"),
        F.col("label").cast("int").alias("label"),
        F.unix_micros(F.to_timestamp(F.col("event_time"))).alias("event_us"),
    )


def _file_writer(schema: pa.Schema, out: Path) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The executor side: stream a partition's batches into `out` (cast to `schema`); yield its row count."""

    def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow.parquet as pq

        out.parent.mkdir(parents=True, exist_ok=True)
        temp = out.with_name(f".{out.name}.tmp")
        rows = 0
        with pq.ParquetWriter(temp, schema, compression="zstd") as writer:
            for batch in batches:
                writer.write_batch(pa.record_batch([batch.column(f.name).cast(f.type) for f in schema], schema=schema))
                rows += batch.num_rows
        temp.replace(out)
        yield pa.record_batch([pa.array([rows], pa.int64())], names=["rows"])

    return write


def join_on_spark(
    spark: SparkSession, served_path: Path, outcomes_path: Path, as_of: datetime, model_store: Path, out: Path,
    *, features: bool = True,
) -> JoinSummary:
    """Write the joined table to `out` from an executor, as `join_logs` + `write_joined` write it locally
    (same rows, columns, values and metadata); the summary of the join."""
    from pyspark.sql import functions as F

    spark.conf.set("spark.sql.session.timeZone", "UTC")
    served = spark.read.option("recursiveFileLookup", "true").parquet(str(served_folder(served_path)))
    versions = sorted((r[0], r[1]) for r in served.select("model", "model_version").distinct().collect())
    windows = LabelWindows.from_store(model_store, versions)
    tasks = windows.tasks()
    logged = features and served.filter(F.col("features_numeric").isNotNull()).limit(1).count() > 0
    numeric = windows.numeric_features() if logged else []
    categorical = windows.categorical_features() if logged else []
    attributes = {
        column: sorted(r[0] for r in served.select(F.explode(F.map_keys(F.col(column)))).distinct().collect())
        for column in ATTRIBUTE_MAPS
    }
    schema = joined_schema(tasks, numeric, categorical, as_of, attributes)
    attribute_of = {name: column for column, names in attributes.items() for name in names}
    as_of_us = int(as_of.timestamp() * 1_000_000)

    def window_us(task: str) -> Column:
        """The row's label window for `task` in microseconds; null when its version lacks the task."""
        expression: Column = F.lit(None).cast("double")
        for model, version in versions:
            hours = windows.hours(model, version, [task])[0]
            if hours == hours:  # not NaN
                hit = (F.col("model") == model) & (F.col("model_version") == version)
                expression = F.when(hit, F.lit(float(hours) * 3_600_000_000)).otherwise(expression)
        return expression

    rows = served.withColumn("ts_us", F.unix_micros(F.col("ts")))
    for task in tasks:
        rows = rows.withColumn(f"__w_{task}", window_us(task))
    outcomes = _read_outcomes(spark, outcomes_path)
    total = outcomes.count()
    known = outcomes.filter(F.col("event_us") <= as_of_us)
    after = total - known.count()
    keyed = known.filter(F.col("request_id").isNotNull() & F.col("candidate_id").isNotNull())
    keys = rows.select("request_id", "candidate_id").distinct()
    matched_count = keyed.join(keys, ["request_id", "candidate_id"], "left_semi").count()
    joined = keyed.join(
        rows.select("request_id", "candidate_id", "candidate_index", "ts_us", *[f"__w_{t}" for t in tasks]),
        ["request_id", "candidate_id"],
    )
    # A row's label per task: the largest label of outcomes within its window (late ones do not count).
    labels = joined.groupBy("request_id", "candidate_id", "candidate_index").agg(*[
        F.max(F.when(
            (F.col("task") == task) & (F.col("event_us") <= F.col("ts_us") + F.col(f"__w_{task}")), F.col("label")
        )).alias(f"__y_{task}")
        for task in tasks
    ])
    rows = rows.join(labels, ["request_id", "candidate_id", "candidate_index"], "left")
    selected: list[Column] = []
    for field in schema:
        name = field.name
        if name == "group_id":
            value = F.conv(F.substring(F.sha2(F.col("request_id"), 256), 1, 15), 16, 10).cast("long")
        elif name in tasks_columns(tasks):
            value = _task_column(name, tasks, as_of_us)
        elif name in numeric:
            value = F.try_element_at(F.col("features_numeric"), F.lit(name))
        elif name in categorical:
            value = F.try_element_at(F.col("features_categorical"), F.lit(name))
        elif name in attribute_of:
            value = F.try_element_at(F.col(attribute_of[name]), F.lit(name))
        else:
            value = F.col(name)
        selected.append(value.alias(name))
    written = rows.select(*selected).repartition(1).mapInArrow(_file_writer(schema, out.resolve()), "rows long")
    counts = [int(r[0]) for r in written.collect()]
    if not counts:  # no partition at all (an empty log): no task ran, the driver writes the empty file
        write_joined(schema.empty_table(), out)
    return JoinSummary(sum(counts), total, matched_count, known.count() - matched_count, after)


def tasks_columns(tasks: list[str]) -> set[str]:
    return {f"{kind}_{task}" for task in tasks for kind in ("logit", "p", "label", "mask")}


def _task_column(name: str, tasks: list[str], as_of_us: int) -> Column:
    from pyspark.sql import functions as F

    kind, task = name.split("_", 1)
    if kind == "logit":
        return F.try_element_at(F.col("logits"), F.lit(task))
    if kind == "p":
        return F.try_element_at(F.col("predictions"), F.lit(task))
    mature = F.col("position").isNotNull() & F.coalesce(
        F.col("ts_us") + F.col(f"__w_{task}") <= F.lit(as_of_us), F.lit(False)
    )
    if kind == "mask":
        return F.when(mature, F.lit(1)).otherwise(F.lit(0)).cast("byte")
    return F.when(mature, F.coalesce(F.col(f"__y_{task}"), F.lit(0))).cast("byte")
