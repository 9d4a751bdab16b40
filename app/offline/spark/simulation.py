"""`simulate --engine spark`: per-group replay of the logged candidate sets on Spark, metrics on the driver.

Groups are hashed into `buckets` (xxhash64 of group_id); `groupBy(bucket).applyInArrow` hands each
bucket's whole groups, as one Arrow table in input order, to the local path's own code: `candidate_log`
(validation and padding), `replay_policy` (the service's composition, guardrails and slate rules) and
`outcome_sums` (the additive parts of every metric: sums over groups, slots and candidates, per
variant, and per value of each segment column). Spark sums them by key; the driver turns the merged
sums into metrics with `outcome_metrics`, the function the local path ends with. A group is never
split across buckets, so per-group results are exact; only the order of float additions differs (~1e-15).
Every variant's replay of a bucket happens in one task, so the logs are read once for all variants.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from app.offline.spark.errors import spark_errors
from app.offline.tuning.logs import PREDICTION, REQUIRED, LogError, candidate_log
from app.offline.tuning.outcomes import filtered_names, outcome_metrics, outcome_sums
from app.offline.tuning.replay import replay_policy
from app.offline.tuning.simulation import PolicyVariant, SimulationResult

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame

__all__ = ["SparkReplayer"]

ROW, BUCKET = "__fusionrank_row", "__fusionrank_bucket"
SUMS_SCHEMA = "variant string, segment string, value string, key string, amount double"


def _replay_bucket(
    variants: Sequence[PolicyVariant], tasks: list[str], origin: str, *, k: int, top_k: int | None,
    context: Mapping[str, str], mix: Sequence[str], segments: Sequence[str], segment_metrics: Sequence[str],
) -> Callable[[pa.Table], pa.Table]:
    """The function `applyInArrow` runs on each bucket of whole groups (on the executors)."""
    def run(table: pa.Table) -> pa.Table:
        import pyarrow as pa

        table = table.sort_by(ROW).drop_columns([ROW, BUCKET])
        log = candidate_log(table, origin, tasks=tasks)
        out: dict[str, list[object]] = {"variant": [], "segment": [], "value": [], "key": [], "amount": []}

        def emit(variant: str, segment: str, value: str, sums: Mapping[str, float]) -> None:
            for key, amount in sums.items():
                for column, item in zip(out, (variant, segment, value, key, amount), strict=True):
                    out[column].append(item)

        for variant in variants:
            replay = replay_policy(log, variant.policy, variant.source, label=variant.label, context=context,
                                   top_k=top_k)
            emit(variant.label, "", "", outcome_sums(log, replay, k, mix=mix))
            for column in segments:
                values = log.columns[column][log.starts]  # the group's first row speaks for the group
                labels = np.array([str(v) for v in values.tolist()], dtype=object)
                for value in sorted(set(labels.tolist())):
                    sums = outcome_sums(log, replay, k, groups=np.flatnonzero(labels == value), creator=None,
                                        new_item=None)
                    emit(variant.label, column, value, sums)
        return pa.table(out, schema=pa.schema([("variant", pa.string()), ("segment", pa.string()),
                                               ("value", pa.string()), ("key", pa.string()),
                                               ("amount", pa.float64())]))

    return run


class SparkReplayer:
    """A candidate log held by Spark (see the module docstring); `run_simulate` takes it as its replayer."""

    def __init__(self, frame: DataFrame, origin: str, *, buckets: int = 64) -> None:
        names = list(frame.columns)
        for column in REQUIRED:
            if column not in names:
                raise LogError(origin, column, "required column is missing",
                               f"write one row per scored candidate with columns {list(REQUIRED)} + p_<task>")
        found = [n[len(PREDICTION):] for n in names if n.startswith(PREDICTION)]
        if not found:
            raise LogError(origin, f"{PREDICTION}<task>", "no prediction column for any task",
                           "add a calibrated prediction column p_<task> per task (e.g. p_click)")
        self.frame, self.origin, self.buckets = frame, origin, buckets
        self._columns = [n for n in names if n != "group_id"]
        self._tasks = tuple(found)

    @property
    def columns(self) -> Sequence[str]:
        return self._columns

    @property
    def tasks(self) -> tuple[str, ...]:
        return self._tasks

    def simulate(
        self, variants: Sequence[PolicyVariant], *, k: int, top_k: int | None, context: Mapping[str, str],
        mix: Sequence[str], segments: Sequence[str], segment_metrics: Sequence[str], show_progress: bool,
    ) -> SimulationResult:
        from pyspark.sql import functions as F

        frame = (self.frame.withColumn(ROW, F.monotonically_increasing_id())
                 .withColumn(BUCKET, F.pmod(F.xxhash64("group_id"), F.lit(self.buckets))))
        run = _replay_bucket(variants, list(self._tasks), self.origin, k=k, top_k=top_k, context=context, mix=mix,
                             segments=segments, segment_metrics=segment_metrics)
        with spark_errors(self.origin):
            merged = (frame.groupBy(BUCKET).applyInArrow(run, SUMS_SCHEMA)
                      .groupBy("variant", "segment", "value", "key").agg(F.sum("amount").alias("amount"))
                      .toArrow().to_pylist())
        sums: dict[tuple[str, str, str], dict[str, float]] = {}
        for item in merged:
            sums.setdefault((item["variant"], item["segment"], item["value"]), {})[item["key"]] = item["amount"]
        metrics: dict[str, dict[str, float]] = {}
        by_segment: dict[str, dict[str, dict[str, dict[str, float]]]] = {s: {} for s in segments}
        for variant in variants:
            filtered = filtered_names(variant.policy)
            metrics[variant.label] = outcome_metrics(sums[(variant.label, "", "")], self._tasks, k, filtered=filtered,
                                                     mix=mix)
            for column in segments:
                values = sorted(value for (label, segment, value) in sums if label == variant.label
                                and segment == column)
                found = {value: outcome_metrics(sums[(variant.label, column, value)], self._tasks, k,
                                                filtered=[], mix=()) for value in values}
                by_segment[column][variant.label] = {
                    value: {m: found[value][m] for m in ("groups", *segment_metrics) if m in found[value]}
                    for value in values
                }
        return SimulationResult(k, list(variants), metrics, by_segment)
