"""Read logged candidate sets (Parquet or CSV) and pad them into per-group matrices.

One row per (request, candidate) that was scored: ``group_id``, ``candidate_id``, one calibrated
prediction ``p_<task>`` per task, optionally the observed label ``label_<task>`` (empty/null =
not observed, which is not a negative) and any attribute columns (creator_id, category, is_new,
sponsored, eligible, margin, user_tenure, ...). Every problem is a `LogError` naming the file, the
column and the fix.

Rows are ordered by group (first appearance) and keep their order inside a group; the padded view
holds G groups of at most N candidates: ``row[g, i]`` is the flat row of candidate i of group g, or
-1 in the padding, and ``mask[g, i]`` is False there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.errors import ArtifactError

__all__ = ["CandidateLog", "LogError", "candidate_log", "read_candidate_log"]

Float = npt.NDArray[np.float64]
PREDICTION = "p_"
LABEL = "label_"
REQUIRED = ("group_id", "candidate_id")


class LogError(ArtifactError):
    """A log file that cannot be tuned on or replayed: names file, column and fix."""

    code = "log_error"


@dataclass(frozen=True)
class CandidateLog:
    """Logged candidate sets: flat columns (rows sorted by group) and the padded [G, N] view."""

    path: str
    tasks: tuple[str, ...]  # tasks with a p_<task> column, in file order
    group_ids: npt.NDArray[Any]  # [G]
    starts: npt.NDArray[np.intp]  # [G] first flat row of each group
    sizes: npt.NDArray[np.intp]  # [G] candidates per group
    row: npt.NDArray[np.intp]  # [G, N] flat row, -1 in the padding
    mask: npt.NDArray[np.bool_]  # [G, N]
    predictions: Float  # [G, N, T] calibrated p per task, 0 in the padding
    labels: Float  # [G, N, T] observed label, NaN where unobserved, absent or padding
    columns: dict[str, npt.NDArray[Any]]  # every other column, flat [R], rows sorted by group

    @property
    def n_groups(self) -> int:
        return len(self.group_ids)

    def task_index(self, task: str, *, field: str = "--target") -> int:
        if task not in self.tasks:
            raise LogError(self.path, f"{PREDICTION}{task}", f"no prediction column for task {task!r}",
                           f"use one of the tasks in the log {list(self.tasks)} in {field}, or add the column")
        return self.tasks.index(task)

    def subset(self, groups: npt.NDArray[np.intp]) -> CandidateLog:
        """The log restricted to some groups (by position), e.g. a held-out split."""
        rows = self.row[groups][self.mask[groups]]  # flat rows of those groups, in order
        sizes = self.sizes[groups]
        starts = np.r_[0, np.cumsum(sizes)[:-1]].astype(np.intp) if len(groups) else sizes
        row = np.where(self.mask[groups], starts[:, None] + np.arange(self.row.shape[1]), -1)
        return CandidateLog(
            path=self.path, tasks=self.tasks, group_ids=self.group_ids[groups], starts=starts, sizes=sizes,
            row=row.astype(np.intp), mask=self.mask[groups], predictions=self.predictions[groups],
            labels=self.labels[groups], columns={k: v[rows] for k, v in self.columns.items()},
        )


def read_candidate_log(
    path: Path, *, tasks: list[str] | None = None, attributes: bool = True, columns: Sequence[str] = ()
) -> CandidateLog:
    """Read and validate a log; `tasks` restricts (and requires) the prediction columns used;
    `attributes=False` reads only ids, predictions, labels (what the tuners need) and `columns` if present."""
    names = _column_names(path)
    if not attributes:
        names = [n for n in names if n in REQUIRED or n.startswith((PREDICTION, LABEL, "mask_")) or n in columns]
    return candidate_log(_read_table(path, names), path, tasks=tasks)


def candidate_log(table: Any, path: Path | str, *, tasks: list[str] | None = None) -> CandidateLog:
    """Validate an Arrow table of logged candidates (rows in log order) and pad it; `path` names it in errors."""
    names = list(table.column_names)
    for column in REQUIRED:
        if column not in names:
            raise LogError(path, column, "required column is missing",
                           f"write one row per scored candidate with columns {list(REQUIRED)} + p_<task>")
    found = [n[len(PREDICTION):] for n in names if n.startswith(PREDICTION)]
    if tasks is None:
        tasks = found
    missing = [t for t in tasks if t not in found]
    if missing or not tasks:
        raise LogError(path, f"{PREDICTION}{missing[0] if missing else '<task>'}",
                       f"no prediction column for {missing or 'any task'} (found {found})",
                       "add a calibrated prediction column p_<task> per task (e.g. p_click)")
    data = {n: _to_numpy(table.column(n)) for n in names}
    group_raw = data.pop("group_id")
    if _has_missing(group_raw) or _has_missing(data["candidate_id"]):
        column = "group_id" if _has_missing(group_raw) else "candidate_id"
        raise LogError(path, column, "has empty values", "give every row a group_id and a candidate_id")
    group_ids, first, inverse = np.unique(group_raw, return_index=True, return_inverse=True)
    # Groups in order of first appearance; rows keep their order inside a group.
    appearance = np.argsort(first, kind="stable")
    rank = np.empty_like(appearance)
    rank[appearance] = np.arange(len(appearance))
    group_of_row = rank[inverse.reshape(-1)]
    order = np.argsort(group_of_row, kind="stable")
    group_ids = group_ids[appearance]
    sizes = np.bincount(group_of_row, minlength=len(group_ids)).astype(np.intp)
    starts = np.r_[0, np.cumsum(sizes)[:-1]].astype(np.intp)
    sorted_groups = group_of_row[order]
    within = np.arange(len(order)) - starts[sorted_groups]
    width = int(sizes.max()) if len(sizes) else 0
    row = np.full((len(group_ids), width), -1, dtype=np.intp)
    row[sorted_groups, within] = np.arange(len(order))
    mask = row >= 0
    in_order = bool((order[1:] > order[:-1]).all())  # most logs are already grouped
    columns = data if in_order else {n: v[order] for n, v in data.items()}
    _check_unique_candidates(path, sorted_groups, columns["candidate_id"])

    predictions = np.zeros((*row.shape, len(tasks)))
    labels = np.full((*row.shape, len(tasks)), np.nan)
    for t, task in enumerate(tasks):
        p = _numeric(path, columns, f"{PREDICTION}{task}")
        bad = ~np.isfinite(p) | (p < 0) | (p > 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise LogError(path, f"{PREDICTION}{task}", f"row {int(order[i])}: {p[i]!r} is not a probability in [0, 1]",
                           "write calibrated probabilities (apply the calibration file to the logits)")
        predictions[sorted_groups, within, t] = p
        label_name = f"{LABEL}{task}"
        if label_name in columns:
            y = _numeric(path, columns, label_name)
            bad = np.isfinite(y) & ((y < 0) | (y > 1)) | np.isinf(y)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise LogError(path, label_name, f"row {int(order[i])}: {y[i]!r} is not a label in [0, 1]",
                               "write 0/1 outcomes, and leave unobserved ones empty (null)")
            mask_name = f"mask_{task}"
            if mask_name in columns:
                y = np.where(_numeric(path, columns, mask_name) > 0, y, np.nan)
            labels[sorted_groups, within, t] = y
    return CandidateLog(
        path=str(path), tasks=tuple(tasks), group_ids=group_ids, starts=starts, sizes=sizes, row=row, mask=mask,
        predictions=predictions, labels=labels, columns=columns,
    )


def _column_names(path: Path) -> list[str]:
    try:
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - the offline extra is installed with the tools
        raise LogError(path, "", "pyarrow is not installed", "pip install 'fusionrank[offline]'") from None
    if not path.is_file():
        raise LogError(path, "", "file not found", "check the path (write demo logs with `fusionrank demo --logs`)")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return list(pq.read_schema(path).names)
        if suffix == ".csv":
            with pacsv.open_csv(path) as reader:
                return list(reader.schema.names)
    except Exception as exc:  # pyarrow raises several unrelated types for bad files
        raise LogError(path, "", f"cannot read the file: {exc}", "write a valid Parquet or CSV file") from None
    raise LogError(path, "", f"unknown file type {suffix!r}", "use a .parquet or .csv file")


def _read_table(path: Path, names: list[str]) -> Any:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        if path.suffix.lower() == ".parquet":
            return pq.read_table(path, columns=names)
        return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(include_columns=names))
    except Exception as exc:  # pyarrow raises several unrelated types for bad files
        raise LogError(path, "", f"cannot read the file: {exc}", "write a valid Parquet or CSV file") from None


def _to_numpy(column: Any) -> npt.NDArray[Any]:
    """Numbers as numbers (nulls -> NaN), anything else as Python objects (nulls -> None)."""
    return np.asarray(column.to_numpy(zero_copy_only=False))


def _has_missing(values: npt.NDArray[Any]) -> bool:
    if values.dtype == object:
        return any(v is None for v in values)
    return bool(values.dtype.kind == "f" and np.isnan(values).any())


def _numeric(path: Path | str, columns: dict[str, npt.NDArray[Any]], name: str) -> Float:
    values = columns[name]
    if values.dtype.kind in "iufb":
        return values.astype(np.float64)
    try:
        return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        raise LogError(path, name, "is not numeric", "write numbers (empty for unobserved)") from None


def _check_unique_candidates(path: Path | str, groups: npt.NDArray[np.intp], candidates: npt.NDArray[Any]) -> None:
    codes = candidates if candidates.dtype != object else np.unique(candidates.astype(str), return_inverse=True)[1]
    order = np.lexsort((codes.reshape(-1), groups))
    same = (groups[order][1:] == groups[order][:-1]) & (codes.reshape(-1)[order][1:] == codes.reshape(-1)[order][:-1])
    if same.any():
        raise LogError(path, "candidate_id", "a candidate appears twice in one group",
                       "write each scored candidate once per group_id")
