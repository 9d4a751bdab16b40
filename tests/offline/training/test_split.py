"""Splits by time, by a split column and by separate files give the same rows; a group never straddles splits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from app.offline.training.encoding import fit_encoding
from app.offline.training.spec import DatasetError, TrainSpec
from app.offline.training.tabular import TableSource
from tests.offline.conftest import tiny_spec


def _split_names(table: pa.Table, split: dict[str, Any]) -> np.ndarray:
    """The time split's name of every row (what `by: time` computes), for the other two ways."""
    seconds = pc.cast(table.column("event_time"), pa.int64()).to_numpy() / 1e6
    code = (seconds >= split["valid_start"].timestamp()).astype(int) + (seconds >= split["test_start"].timestamp())
    return np.array(["train", "valid", "test"])[code]


def _spec(split: dict[str, Any]) -> TrainSpec:
    spec = tiny_spec()
    spec["dataset"]["split"] = split
    return TrainSpec.model_validate(spec)


def _rows(data: Path, spec: TrainSpec) -> dict[str, int]:
    return fit_encoding(TableSource.open(data, spec.dataset)).rows


def test_a_split_column_and_split_files_give_the_time_split_rows(tiny_log: Path, tmp_path: Path) -> None:
    raw = tiny_spec()
    expected = _rows(tiny_log, TrainSpec.model_validate(raw))
    table = pq.read_table(tiny_log)
    names = _split_names(table, raw["dataset"]["split"])
    with_column = tmp_path / "with_column.parquet"
    pq.write_table(table.append_column("fold", pa.array(names)), with_column)
    assert _rows(with_column, _spec({"by": "column", "column": "fold"})) == expected
    folder = tmp_path / "files"
    folder.mkdir()
    for name in ("train", "valid", "test"):
        pq.write_table(table.filter(pa.array(names == name)), folder / f"{name}.parquet")
    files = {"train": "train.parquet", "valid": "valid.parquet", "test": "test.parquet"}
    assert _rows(folder, _spec({"by": "files", "files": files})) == expected


def test_a_group_in_two_splits_is_refused_naming_it(tiny_log: Path, tmp_path: Path) -> None:
    table = pq.read_table(tiny_log)
    fold = np.where(
        np.arange(table.num_rows) % 3 == 0, "train", np.where(np.arange(table.num_rows) % 3 == 1, "valid", "test")
    )
    path = tmp_path / "leaky.parquet"
    pq.write_table(table.append_column("fold", pa.array(fold)), path)
    with pytest.raises(DatasetError, match=r"request_id: \d+ group id\(s\) have rows in both train and valid"):
        _rows(path, _spec({"by": "column", "column": "fold"}))


def test_a_bad_split_value_names_the_column_and_row(tiny_log: Path, tmp_path: Path) -> None:
    table = pq.read_table(tiny_log)
    fold = np.full(table.num_rows, "train", dtype=object)
    fold[5] = "holdout"
    path = tmp_path / "bad.parquet"
    pq.write_table(table.append_column("fold", pa.array(fold.astype(str))), path)
    with pytest.raises(DatasetError, match=r"fold: row 5: split value 'holdout' is not train, valid or test"):
        _rows(path, _spec({"by": "column", "column": "fold"}))


@pytest.mark.parametrize(
    ("split", "message"),
    [
        ({"by": "column"}, "dataset.split.column is required with by: column"),
        ({"by": "files", "files": {"train": "a.parquet"}}, "must name a file or folder for each of train, valid"),
        ({"by": "time"}, "valid_start and dataset.split.test_start are required with by: time"),
        ({"by": "column", "column": "fold", "valid_start": "2026-01-01T00:00:00Z"}, "only apply to by: time"),
    ],
)
def test_split_fields_are_validated_naming_the_field(split: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _spec(split)
