"""Read a predictions file (Parquet or CSV) in bounded-memory batches, validating it at the edge.

Columns, per task T: `logit_T` (raw logit) or `p_T` (raw probability; `logit_T` wins when both are
present), `label_T` (0/1), optional `mask_T` (1 = observed and mature; 0 rows are ignored), plus the
segment columns asked for. Every problem raises an `ArtifactError` naming the file, the column (and
the row when one is at fault) and the fix. pyarrow is imported lazily (the `offline` extra).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from app.errors import ArtifactError
from app.serving.calibration import logit

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["MISSING", "PredictionFile", "TaskColumns", "encode_column", "find_tasks", "observed", "raw_logits"]

Array = npt.NDArray[np.float64]
MISSING = "\x00missing"  # the cell value of a null segment value: never gets a correction
_BATCH_ROWS = 1 << 20


@dataclass(frozen=True, slots=True)
class TaskColumns:
    task: str
    raw: str  # logit_T or p_T
    label: str | None
    mask: str | None

    @property
    def is_probability(self) -> bool:
        return self.raw.startswith("p_")


def _pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ArtifactError(
            "pyarrow", "", "reading predictions files needs pyarrow", "pip install 'fusionrank[offline]'"
        ) from None


class PredictionFile:
    """One predictions file: its columns, tasks, and batches of the columns a command needs."""

    def __init__(self, path: Path) -> None:
        _pyarrow()
        self.path = path
        if not path.is_file():
            raise ArtifactError(path, "", "predictions file not found", "check the path")
        suffix = "".join(path.suffixes[-2:]).lower()
        if path.suffix.lower() in (".parquet", ".pq"):
            self.format = "parquet"
        elif path.suffix.lower() == ".csv" or suffix == ".csv.gz":
            self.format = "csv"
        else:
            raise ArtifactError(path, "", f"unknown file type {path.suffix!r}", "use a .parquet or .csv file")
        self.schema = self._read_schema()
        self.columns = list(self.schema.names)

    def _read_schema(self) -> pa.Schema:
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        try:
            if self.format == "parquet":
                return pq.read_schema(self.path)
            with pacsv.open_csv(self.path) as reader:
                return reader.schema
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise ArtifactError(self.path, "", f"cannot read as {self.format}: {exc}", "check the file") from None

    @property
    def rows(self) -> int | None:
        """Row count when the format records it (Parquet), else None."""
        if self.format != "parquet":
            return None
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(self.path).metadata.num_rows)

    def tasks(self, *, need_labels: bool, only: Sequence[str] | None = None) -> list[TaskColumns]:
        """The tasks found (or `only` these), each with its raw, label and mask columns."""
        return find_tasks(self.columns, self.path, need_labels=need_labels, only=only)

    def require(self, columns: Sequence[str], what: str) -> None:
        missing = [c for c in columns if c not in self.columns]
        if missing:
            raise ArtifactError(self.path, missing[0], f"{what} column {missing[0]!r} is missing",
                                f"add it, or pick from the file's columns {self.columns}")

    def batches(self, columns: Sequence[str], batch_rows: int = _BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        if self.format == "parquet":
            # One row group at a time: asked for all of them at once, the reader pre-buffers every row
            # group's column chunks before the first batch (the whole file: 1.8 GB held at 50M rows).
            reader = pq.ParquetFile(self.path)
            for group in range(reader.num_row_groups):
                yield from reader.iter_batches(batch_size=batch_rows, row_groups=[group], columns=list(columns))
            return
        types = {c: self.schema.field(c).type for c in columns}
        for name, kind in types.items():
            if pa.types.is_null(kind):
                types[name] = pa.string()
        options = pacsv.ConvertOptions(include_columns=list(columns), column_types=types)
        with pacsv.open_csv(self.path, convert_options=options) as reader:
            yield from reader

    def raw_logits(self, batch: pa.RecordBatch, columns: TaskColumns, first_row: int) -> Array:
        """The task's raw prediction as float64 logits [R] (NaN stays NaN; masked rows are checked later)."""
        return raw_logits(batch, columns, self.path, first_row)

    def observed(self, batch: pa.RecordBatch, columns: TaskColumns, z: Array, first_row: int) -> tuple[Array, Array]:
        """(labels [R], weights [R]): weight 1 for observed rows, 0 for masked; checks observed rows."""
        return observed(batch, columns, z, self.path, first_row)


def find_tasks(
    columns: Sequence[str], path: Path | str, *, need_labels: bool, only: Sequence[str] | None = None
) -> list[TaskColumns]:
    """The tasks among `columns` (or `only` these), each with its raw, label and mask columns."""
    names = set(columns)
    found = sorted({c.split("_", 1)[1] for c in columns if c.startswith(("logit_", "p_")) and "_" in c})
    wanted = list(only) if only is not None else found
    out = []
    for task in wanted:
        raw = f"logit_{task}" if f"logit_{task}" in names else f"p_{task}" if f"p_{task}" in names else None
        if raw is None:
            raise ArtifactError(path, f"logit_{task}", f"no raw prediction column for task {task!r}",
                                f"add a logit_{task} (or p_{task}) column")
        label = f"label_{task}" if f"label_{task}" in names else None
        if need_labels and label is None:
            raise ArtifactError(path, f"label_{task}", f"column {raw} has no label column",
                                f"add label_{task} (0/1), or drop {raw}")
        out.append(TaskColumns(task, raw, label, f"mask_{task}" if f"mask_{task}" in names else None))
    if not out:
        raise ArtifactError(path, "", "no prediction columns found",
                            "name raw predictions logit_<task> or p_<task>, labels label_<task>")
    return out


def raw_logits(batch: pa.RecordBatch, columns: TaskColumns, path: Path | str, first_row: int) -> Array:
    """The task's raw prediction of a batch as float64 logits [R] (NaN stays NaN)."""
    values = _floats(batch, columns.raw, path)
    if columns.is_probability:
        bad = np.flatnonzero((values < 0) | (values > 1))
        if bad.size:
            raise ArtifactError(path, columns.raw, f"row {first_row + int(bad[0])}: {values[bad[0]]}"
                                " is not a probability", "give probabilities in [0, 1], or logits as logit_*")
        return np.where(np.isnan(values), np.nan, logit(np.nan_to_num(values)))
    return values


def observed(
    batch: pa.RecordBatch, columns: TaskColumns, z: Array, path: Path | str, first_row: int
) -> tuple[Array, Array]:
    """(labels [R], weights [R]) of a batch: weight 1 for observed rows, 0 for masked; checks observed rows."""
    w = np.ones(batch.num_rows) if columns.mask is None else _floats(batch, columns.mask, path)
    if columns.mask is not None and not np.all((w == 0) | (w == 1)):
        bad = int(np.flatnonzero((w != 0) & (w != 1))[0])
        raise ArtifactError(path, columns.mask, f"row {first_row + bad}: mask {w[bad]} is not 0 or 1",
                            "use 1 for an observed label and 0 for a missing one")
    if columns.label is None:
        raise ArtifactError(path, f"label_{columns.task}", "no label column", f"add label_{columns.task}")
    y = _floats(batch, columns.label, path)
    seen = w > 0
    bad_y = np.flatnonzero(seen & ~((y == 0) | (y == 1)))
    if bad_y.size:
        row = int(bad_y[0])
        raise ArtifactError(path, columns.label, f"row {first_row + row}: label {y[row]} is not 0 or 1",
                            f"use 0/1 labels; mark unobserved rows with {columns.mask or 'a mask_ column'} = 0")
    bad_z = np.flatnonzero(seen & ~np.isfinite(z))
    if bad_z.size:
        row = int(bad_z[0])
        raise ArtifactError(path, columns.raw, f"row {first_row + row}: prediction {z[row]} is not finite",
                            "fix the prediction, or mask the row")
    return np.where(seen, y, 0.0), w


def _floats(batch: pa.RecordBatch, column: str, path: Path | str) -> Array:
    import pyarrow as pa

    array = batch.column(column)
    if not (pa.types.is_integer(array.type) or pa.types.is_floating(array.type) or pa.types.is_boolean(array.type)):
        raise ArtifactError(path, column, f"column has type {array.type}, not a number", "store it as a number")
    return np.asarray(array.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def encode_column(batch: pa.RecordBatch, column: str) -> tuple[npt.NDArray[np.int64], list[str]]:
    """Dictionary-encode a segment column: (codes [R], dictionary); nulls become the MISSING value."""
    import pyarrow as pa

    array = batch.column(column)
    if pa.types.is_dictionary(array.type) and pa.types.is_string(array.type.value_type):
        encoded = array  # Parquet keeps low-cardinality strings dictionary-encoded: use that as is
    else:
        if not pa.types.is_string(array.type):
            array = array.cast(pa.string())
        encoded = array.dictionary_encode()
    dictionary = [str(v) for v in encoded.dictionary.to_pylist()] + [MISSING]
    codes = encoded.indices.fill_null(len(dictionary) - 1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, dictionary
