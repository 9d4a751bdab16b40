from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.offline.tuning import LogError, read_candidate_log
from app.offline.tuning.demo_logs import write_log


def _columns() -> dict[str, object]:
    return {
        "group_id": np.array(["b", "a", "b", "a", "a"], dtype=object),
        "candidate_id": np.array([1, 1, 2, 2, 3]),
        "p_click": np.array([0.1, 0.2, 0.3, 0.4, 0.5]),
        "label_click": np.array([1.0, np.nan, 0.0, 1.0, np.nan]),
        "creator_id": np.array(["x", "y", "x", "z", "y"], dtype=object),
    }


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_groups_are_padded_in_order_of_appearance(tmp_path: Path, suffix: str) -> None:
    log = read_candidate_log(write_log(tmp_path / f"log{suffix}", _columns()))
    assert log.tasks == ("click",)
    assert list(log.group_ids) == ["b", "a"]
    assert log.sizes.tolist() == [2, 3]
    assert log.mask.tolist() == [[True, True, False], [True, True, True]]
    assert log.predictions[:, :, 0].tolist() == [[0.1, 0.3, 0.0], [0.2, 0.4, 0.5]]
    labels = log.labels[:, :, 0]
    assert labels[0, :2].tolist() == [1.0, 0.0] and np.isnan(labels[1, 0]) and labels[1, 1] == 1.0
    assert log.columns["creator_id"].tolist() == ["x", "x", "y", "z", "y"]
    held = log.subset(np.array([1]))
    assert held.columns["creator_id"].tolist() == ["y", "z", "y"] and held.row.tolist() == [[0, 1, 2]]


def test_missing_column_names_file_column_and_fix(tmp_path: Path) -> None:
    columns = _columns()
    del columns["group_id"]
    path = write_log(tmp_path / "log.parquet", columns)
    with pytest.raises(LogError) as info:
        read_candidate_log(path)
    assert str(path) in info.value.message and "group_id" in info.value.message and "fix:" in info.value.message


@pytest.mark.parametrize(
    ("column", "value", "needle"),
    [("p_click", 1.5, "not a probability"), ("label_click", 2.0, "not a label"), ("candidate_id", 1, "twice")],
)
def test_bad_values_are_refused(tmp_path: Path, column: str, value: float, needle: str) -> None:
    columns = _columns()
    array = np.array(columns[column], dtype=float if column != "candidate_id" else int)
    array[2] = value  # candidate 1 twice in group b, or a bad number
    columns[column] = array
    with pytest.raises(LogError, match=needle) as info:
        read_candidate_log(write_log(tmp_path / "log.parquet", columns))
    assert info.value.field == column


def test_unknown_task_is_named(tmp_path: Path) -> None:
    with pytest.raises(LogError, match="p_purchase"):
        read_candidate_log(write_log(tmp_path / "log.parquet", _columns()), tasks=["click", "purchase"])
