"""A predictions DataFrame read the way the local reader reads a file, as native Spark columns.

The Spark counterpart of `app.offline.calibration.source`: per task the raw logit z (a `p_T`
column goes through the same clipped logit), the label y and the weight w (1 observed, 0 masked),
each segment feature as a string (null = `MISSING`), and the same checks. The checks run inside the
job that uses the rows, as counts of bad rows (no extra pass over the data); when one is not zero,
`raise_first_problem` looks one bad row up and raises the local reader's error for it, naming the
row by its key instead of a row number (a distributed read has no row numbers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.errors import ArtifactError
from app.offline.calibration.source import MISSING, TaskColumns
from app.offline.spark.errors import spark_errors

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

__all__ = ["PROBLEMS", "SparkPredictions", "TaskExpressions"]

_EPS = 1e-15  # app.serving.calibration.logit's clip
# Kinds of bad rows, in the order the local reader checks a batch; each with its message and fix.
PROBLEMS = ("probability", "mask", "label", "prediction")


@dataclass(frozen=True, slots=True)
class TaskExpressions:
    """One task's native columns: z, y and w as the local reader computes them, and a 0/1 flag per problem."""

    z: Column
    y: Column
    w: Column
    problems: dict[str, Column]


def _double(column: str) -> Column:
    """A numeric column as double, null as NaN (pyarrow's to_numpy does the same)."""
    from pyspark.sql import functions as F

    return F.coalesce(F.col(column).cast("double"), F.lit(float("nan")))


def _in(value: Column, *allowed: float) -> Column:
    """value is one of `allowed` (NaN is none of them: in Spark NaN = NaN is true, so test it apart)."""
    from pyspark.sql import functions as F

    test = value == F.lit(allowed[0])
    for other in allowed[1:]:
        test = test | (value == F.lit(other))
    return ~F.isnan(value) & test


class SparkPredictions:
    """The tasks and segment columns of a predictions DataFrame, checked at the edge (schema) and per row."""

    def __init__(self, frame: DataFrame, tasks: Sequence[TaskColumns], segments: Sequence[str], origin: str) -> None:
        from pyspark.sql.types import BooleanType, DoubleType, FloatType, IntegralType, StringType

        self.frame = frame
        self.tasks = list(tasks)
        self.segments = tuple(segments)
        self.origin = origin
        missing = [s for s in self.segments if s not in frame.columns]
        if missing:
            raise ArtifactError(origin, missing[0], f"segment column {missing[0]!r} is missing",
                                f"add it, or pick from the input's columns {frame.columns}")
        numeric = (IntegralType, FloatType, DoubleType, BooleanType)
        for column in sorted({c for t in self.tasks for c in (t.raw, t.label, t.mask) if c is not None}):
            kind = frame.schema[column].dataType
            if not isinstance(kind, numeric):
                raise ArtifactError(origin, column, f"column has type {kind.simpleString()}, not a number",
                                    "store it as a number")
        for column in self.segments:
            kind = frame.schema[column].dataType
            if not isinstance(kind, (StringType, IntegralType, BooleanType)):
                # Spark and Arrow print other types (floats, dates) differently: the cells would not match.
                raise ArtifactError(origin, column, f"segment column has type {kind.simpleString()}",
                                    "segment by a string, integer or boolean column (cast it to string)")

    def segment_values(self, names: Sequence[str]) -> list[Column]:
        """Each segment feature as a string column, named `names[j]`; null -> MISSING (as `encode_column`)."""
        from pyspark.sql import functions as F

        return [F.coalesce(F.col(s).cast("string"), F.lit(MISSING)).alias(n)
                for s, n in zip(self.segments, names, strict=True)]

    def task(self, columns: TaskColumns) -> TaskExpressions:
        """z, y, w and the problem flags of one task, as `raw_logits` and `observed` compute them."""
        from pyspark.sql import functions as F

        raw = _double(columns.raw)
        problems = {}
        if columns.is_probability:
            problems["probability"] = ~F.isnan(raw) & ((raw < 0.0) | (raw > 1.0))
            clipped = F.least(F.greatest(raw, F.lit(_EPS)), F.lit(1.0 - _EPS))
            z = F.when(F.isnan(raw), F.lit(float("nan"))).otherwise(F.log(clipped) - F.log1p(-clipped))
        else:
            z = raw
        if columns.label is None:
            raise ArtifactError(self.origin, f"label_{columns.task}", "no label column", f"add label_{columns.task}")
        w = F.lit(1.0) if columns.mask is None else _double(columns.mask)
        if columns.mask is not None:
            problems["mask"] = ~_in(w, 0.0, 1.0)
        label = _double(columns.label)
        seen = ~F.isnan(w) & (w > 0.0)  # NaN > 0 is true in Spark, false in numpy
        problems["label"] = seen & ~_in(label, 0.0, 1.0)
        problems["prediction"] = seen & (F.isnan(z) | (F.abs(z) == F.lit(float("inf"))))
        y = F.when(seen, label).otherwise(F.lit(0.0))
        return TaskExpressions(z=z, y=y, w=w, problems={k: v.cast("long") for k, v in problems.items()})

    def bad(self, columns: TaskColumns) -> Column:
        """True for a row the local reader refuses for this task (any problem)."""
        from functools import reduce

        return reduce(lambda a, b: a | b, (flag == 1 for flag in self.task(columns).problems.values()))

    def raise_first_problem(self, tasks: Sequence[TaskColumns], key: str) -> None:
        """Raise the local reader's error for a bad row of `tasks` (known to have some), the first kind first."""
        from pyspark.sql import functions as F

        for problem in PROBLEMS:
            for columns in tasks:
                flag = self.task(columns).problems.get(problem)
                if flag is None:
                    continue
                column = {"mask": columns.mask, "label": columns.label}.get(problem) or columns.raw
                with spark_errors(self.origin):
                    row = self.frame.filter(flag == 1).select(F.col(key), F.col(column)).limit(1).collect()
                if row:
                    raise ArtifactError(self.origin, column,
                                        *_message(problem, f"row with {key} = {row[0][0]}", row[0][1], columns))
        raise ArtifactError(self.origin, "", "rows the checks refused are gone on a second read",
                            "the input changed while it was read: run again on a stable input")


def _message(problem: str, where: str, value: object, columns: TaskColumns) -> tuple[str, str]:
    """(what is wrong, how to fix it), worded as the local reader words it."""
    if problem == "probability":
        return (f"{where}: {value} is not a probability", "give probabilities in [0, 1], or logits as logit_*")
    if problem == "mask":
        return (f"{where}: mask {value} is not 0 or 1", "use 1 for an observed label and 0 for a missing one")
    if problem == "label":
        return (f"{where}: label {value} is not 0 or 1",
                f"use 0/1 labels; mark unobserved rows with {columns.mask or 'a mask_ column'} = 0")
    return (f"{where}: prediction {value} is not finite", "fix the prediction, or mask the row")
