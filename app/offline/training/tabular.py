"""Stream a log from Parquet or CSV files in record batches (pyarrow), never the whole file at once.

A `TableSource` is a list of files plus the columns a spec reads; `batches()` can be called once per
epoch, so a dataset larger than memory trains by re-reading it. Columns are checked up front: a spec
naming a column the file lacks fails before any training, naming the file, the column and the fix.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from app.offline.training.spec import DatasetError, DatasetSpec

__all__ = ["TableSource", "resolve_files"]

_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


def resolve_files(data: Path, fmt: str | None) -> tuple[list[Path], str]:
    """A file, or every Parquet/CSV file of a folder (sorted by name, so the order is stable)."""
    if data.is_dir():
        files = sorted(
            p for p in data.iterdir() if p.suffix in _SUFFIXES and (fmt is None or _SUFFIXES[p.suffix] == fmt)
        )
    elif data.is_file():
        files = [data]
    else:
        raise DatasetError(data, "", "no such file or folder", "pass --data a Parquet/CSV file or a folder of them")
    if not files:
        raise DatasetError(data, "", "no .parquet or .csv files in this folder", "point --data at the log files")
    formats = {fmt or _SUFFIXES.get(f.suffix, "") for f in files}
    if len(formats) != 1 or "" in formats:
        raise DatasetError(
            data,
            "dataset.format",
            f"cannot tell the format of {[f.name for f in files]}",
            "use .parquet or .csv file names, or set dataset.format in the spec",
        )
    return files, formats.pop()


@dataclass(frozen=True)
class TableSource:
    """The files of one log and how to read the spec's columns from them."""

    files: Sequence[Path]
    format: str
    spec: DatasetSpec
    batch_rows: int = 65_536

    @classmethod
    def open(cls, data: Path, spec: DatasetSpec, batch_rows: int = 65_536) -> TableSource:
        if spec.split.by == "files":  # one file or folder per split, relative to `data`
            from app.offline.training.split import split_files

            found = [resolve_files(part, spec.format) for part in split_files(data, spec)]
            formats = {fmt for _, fmt in found}
            if len(formats) > 1:
                raise DatasetError(data, "dataset.split.files", f"the split files mix formats {sorted(formats)}",
                                   "use one format, or set dataset.format")
            files, fmt = [f for part, _ in found for f in part], formats.pop()
        else:
            files, fmt = resolve_files(data, spec.format)
        source = cls(files, fmt, spec, batch_rows)
        source.check_columns()
        return source

    def check_columns(self) -> None:
        """Every column the spec names exists in every file."""
        wanted = self.spec.columns()
        for path in self.files:
            present = self._schema(path).names
            missing = [c for c in wanted if c not in present]
            if missing:
                raise DatasetError(
                    path,
                    missing[0],
                    f"column(s) {missing} named by the spec are not in this file",
                    f"fix the spec's column names or the data; the file has {present}",
                )

    def batches(self) -> Iterator[tuple[Path, pa.RecordBatch]]:
        """(file, record batch) pairs with the spec's columns, in file order."""
        columns = self.spec.columns()
        for path in self.files:
            if self.format == "parquet":
                reader = pq.ParquetFile(path)
                for batch in reader.iter_batches(batch_size=self.batch_rows, columns=columns):
                    yield path, batch
            else:
                yield from ((path, b) for b in self._csv_batches(path, columns))

    def _csv_batches(self, path: Path, columns: list[str]) -> Iterator[pa.RecordBatch]:
        # Category-like columns are read as strings, so "007" stays "007" and types never change
        # between blocks; numbers as float64. Event time and masks are left to inference.
        spec = self.spec
        types: dict[str, pa.DataType] = {
            c: pa.string() for c in [spec.group_id, spec.candidate_id, *spec.categorical, *spec.segments]
        }
        numbers = [f.name for f in spec.numeric] + [t.label for t in spec.tasks]
        numbers += [spec.sample_weight] if spec.sample_weight else []  # masks: 0/1 or true/false, inferred
        types.update({c: pa.float64() for c in numbers})
        # Block size in bytes: roughly batch_rows rows of ~100 bytes each.
        read = pacsv.ReadOptions(block_size=max(1 << 16, min(1 << 26, self.batch_rows * 100)))
        convert = pacsv.ConvertOptions(column_types=types, include_columns=columns)
        try:
            with pacsv.open_csv(path, read_options=read, convert_options=convert) as reader:
                yield from reader
        except pa.ArrowInvalid as exc:
            raise DatasetError(
                path, "", f"cannot parse the CSV: {exc}", "check the column's values and types"
            ) from None

    def _schema(self, path: Path) -> pa.Schema:
        try:
            if self.format == "parquet":
                return pq.read_schema(path)
            with pacsv.open_csv(path) as reader:
                return reader.schema
        except (pa.ArrowInvalid, OSError) as exc:
            raise DatasetError(
                path, "", f"cannot read as {self.format}: {exc}", "check the file and its format"
            ) from None
