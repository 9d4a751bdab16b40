"""Which split (train / valid / test) each row belongs to: by event time, by a split column, or by file.

`dataset.split.by`:
- ``time`` (default): train < valid_start <= valid < test_start <= test, on the event time.
- ``column``: the column `dataset.split.column` holds ``train``, ``valid`` or ``test`` on every row.
- ``files``: `dataset.split.files` names one file (or folder) per split, relative to ``--data``.

Group-aware: a group (request) id never straddles splits. `GroupSplits` collects the (hashed) group
ids seen in each split during the encoding pass and refuses a log where one group lands in two
splits, naming the group and the fix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from app.offline.calibration.collect import string_keys
from app.offline.training.spec import DatasetError, DatasetSpec

__all__ = ["SPLITS", "GroupSplits", "file_split", "row_splits", "split_files"]

SPLITS = ("train", "valid", "test")


def row_splits(
    batch: pa.RecordBatch,
    spec: DatasetSpec,
    path: Path,
    seconds: npt.NDArray[np.float64],
    valid_start: float,
    test_start: float,
) -> npt.NDArray[np.int8]:
    """Split code per row [R] (index into SPLITS); `seconds` [R] only matters for ``by: time``."""
    split = spec.split
    if split.by == "time":
        return (seconds >= valid_start).astype(np.int8) + (seconds >= test_start).astype(np.int8)
    if split.by == "files":
        code = file_split(path, spec)
        if code is None:
            raise DatasetError(
                path,
                "dataset.split.files",
                "this file is not one of the split files",
                "name it under dataset.split.files (train / valid / test)",
            )
        return np.full(batch.num_rows, code, dtype=np.int8)
    column = str(split.column)
    values = pc.cast(batch.column(column), pa.string()).to_numpy(zero_copy_only=False)
    codes = np.full(batch.num_rows, -1, dtype=np.int8)
    for i, name in enumerate(SPLITS):
        codes[values == name] = i
    bad = np.flatnonzero(codes < 0)
    if len(bad):
        raise DatasetError(
            path,
            column,
            f"row {int(bad[0])}: split value {values[bad[0]]!r} is not train, valid or test",
            f"write train / valid / test in the {column!r} column (dataset.split.column)",
        )
    return codes


def file_split(path: Path, spec: DatasetSpec) -> int | None:
    """The split whose `dataset.split.files` entry is this file or one of its folders (matched from the right)."""
    files: dict[str, str] = {str(k): v for k, v in (spec.split.files or {}).items()}
    resolved = path.resolve()
    for code, name in enumerate(SPLITS):
        entry = Path(files[name])
        for candidate in (resolved, *resolved.parents):
            if entry.is_absolute():
                if candidate == entry.resolve():
                    return code
            elif candidate.parts[-len(entry.parts) :] == entry.parts:
                return code
    return None


def split_files(data: Path, spec: DatasetSpec) -> list[Path]:
    """``by: files``: the split files (or folders), relative to `data` unless absolute, in SPLITS order."""
    files: dict[str, str] = {str(k): v for k, v in (spec.split.files or {}).items()}
    return [Path(files[name]) if Path(files[name]).is_absolute() else data / files[name] for name in SPLITS]


class GroupSplits:
    """The group ids seen per split (64-bit hashes), to prove that no group straddles two splits."""

    def __init__(self) -> None:
        self._seen: list[list[npt.NDArray[np.int64]]] = [[] for _ in SPLITS]
        self._example: dict[int, str] = {}

    def add(self, groups: pa.Array | pa.ChunkedArray, split: npt.NDArray[np.int8]) -> None:
        raw = pc.cast(groups, pa.string()).to_numpy(zero_copy_only=False)
        keys = string_keys(raw)
        for code in range(len(SPLITS)):
            chosen = split == code
            if chosen.any():
                unique, first = np.unique(keys[chosen], return_index=True)
                self._seen[code].append(unique)
                names = raw[chosen][first]
                for k, n in zip(unique[:50].tolist(), names[:50].tolist(), strict=True):
                    self._example.setdefault(k, str(n))

    def check(self, origin: Path, group_column: str) -> None:
        """Refuse a group id present in two splits (DatasetError naming one such group and the splits)."""
        seen = [np.unique(np.concatenate(parts)) if parts else np.empty(0, np.int64) for parts in self._seen]
        for a in range(len(SPLITS)):
            for b in range(a + 1, len(SPLITS)):
                shared = np.intersect1d(seen[a], seen[b])
                if len(shared):
                    example = next((self._example[k] for k in shared.tolist() if k in self._example), "?")
                    raise DatasetError(
                        origin,
                        group_column,
                        f"{len(shared)} group id(s) have rows in both {SPLITS[a]} and {SPLITS[b]} (e.g. {example!r});"
                        " a request must stay in one split or its candidates leak between training and evaluation",
                        "move each group's rows into one split (for a time split: put valid_start / test_start"
                        " between requests)",
                    )
