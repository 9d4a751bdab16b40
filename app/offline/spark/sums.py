"""Per task x segment cell x bin sums as one native Spark aggregation: what `CalibrationStats.add` sums.

The tasks sit side by side in a predictions row (logit_click, label_click, logit_purchase ...).
`task_sums` stacks them (`unpivot`: one row per input row and task, inside the same generated code
as the scan), then one `groupBy(task, cells..., bin).agg(sum ...)`: each executor pre-sums its
partition (a few thousand groups), and only those partial sums are shuffled. No Python runs on the
executors and the input is read once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from app.offline.calibration.stats import LogitGrid
from app.offline.spark.errors import spark_errors

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import Column, DataFrame

__all__ = ["TASK", "logit_bin", "task_sums"]

TASK = "__fusionrank_task"  # the column naming each stacked row's task


def logit_bin(z: Column, grid: LogitGrid) -> Column:
    """`LogitGrid.index` as a Spark expression: the same double operations, so the same bin for every z."""
    from pyspark.sql import functions as F

    scaled = (z - F.lit(grid.lo)) * F.lit(grid.bins / (grid.hi - grid.lo))
    # Clipped to [0, bins) first, the truncating cast is the floor (as numpy's astype).
    return F.least(F.greatest(scaled, F.lit(0.0)), F.lit(grid.bins - 0.5)).cast("int")


def task_sums(
    frame: DataFrame, keys: Sequence[str], per_task: Mapping[str, Mapping[str, Column]], origin: str,
) -> pa.Table:
    """Per (task, *keys, bin): `rows` (every row) and the sum of each value over the rows with bin >= 0.

    frame: has the `keys` columns (the segment cells); per_task: task -> {"bin": int column, name:
    double column, ...}, the same names for every task. A negative bin marks a row that is counted
    but not summed (masked, held out, bad: the caller's codes). Returns Arrow with a `TASK` column.
    """
    import pyarrow as pa
    from pyspark.sql import functions as F

    names = [n for n in next(iter(per_task.values())) if n != "bin"]
    slots = {f"__fusionrank_t{i}": task for i, task in enumerate(per_task)}
    wide = frame.select(*keys, *(F.struct(*(per_task[task][n].alias(n) for n in ["bin", *names])).alias(slot)
                                 for slot, task in slots.items()))
    stacked = wide.unpivot(list(keys), list(slots), "__fusionrank_slot", "__fusionrank_v")
    flat = stacked.select("__fusionrank_slot", *keys, *(F.col(f"__fusionrank_v.{n}").alias(n) for n in ["bin", *names]))
    counted = F.col("bin") >= 0
    sums = [F.sum(F.when(counted, F.col(n)).otherwise(F.lit(0.0))).alias(n) for n in names]
    grouped = flat.groupBy("__fusionrank_slot", *keys, "bin").agg(F.count(F.lit(1)).alias("rows"), *sums)
    with spark_errors(origin):
        table = grouped.toArrow()
    task = pa.array([slots[s] for s in table.column("__fusionrank_slot").to_pylist()], type=pa.string())
    return table.drop_columns(["__fusionrank_slot"]).append_column(TASK, task)
