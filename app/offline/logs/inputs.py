"""Read the inputs of `fusionrank logs join`: the served log, an outcomes file, the label windows.

The served log is the folder the service writes (`<root>/served/surface=/date=/hour=/`, or `<root>` itself)
or one of its files. Outcomes are the service's outcomes log or the user's own Parquet/CSV file with at
least ``request_id``, ``candidate_id``, ``task``, ``label`` (0/1) and ``event_time`` (ISO 8601 or a
timestamp; naive means UTC). Label windows and feature names come from each logged model version's
manifest in the model store. Every problem raises an `ArtifactError` naming the file, column and fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds

from app.artifacts.loading import load_manifest
from app.artifacts.manifest import ModelManifest
from app.errors import ArtifactError

__all__ = ["OUTCOME_COLUMNS", "LabelWindows", "read_outcomes", "read_served", "served_folder"]

OUTCOME_COLUMNS = ("request_id", "candidate_id", "task", "label", "event_time")
_TS = pa.timestamp("us", tz="UTC")


def served_folder(path: Path) -> Path:
    """`<root>/served` when given the log root, else the path itself."""
    return path / "served" if (path / "served").is_dir() else path


def _dataset(path: Path, what: str) -> ds.Dataset:
    if not path.exists():
        raise ArtifactError(path, "", f"{what} not found", "check the path")
    try:
        return ds.dataset(
            path, format="parquet", partitioning=ds.HivePartitioning.discover(infer_dictionary=True),
            ignore_prefixes=[".", "_"],
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise ArtifactError(
            path, "", f"cannot read the {what}: {exc}", "give a folder of Parquet files or a file"
        ) from None


def read_served(path: Path) -> pa.Table:
    """The served log as one table (partition columns date/hour dropped, surface as a plain string)."""
    folder = served_folder(path)
    table = _dataset(folder, "served log").to_table()
    for name in ("date", "hour"):
        if name in table.column_names:
            table = table.drop_columns([name])
    missing = [c for c in ("request_id", "ts", "candidate_id", "predictions", "logits") if c not in table.column_names]
    if missing:
        raise ArtifactError(folder, missing[0], "not a served log (see docs/files.md)",
                            "give the folder FUSIONRANK_SERVED_LOG_PATH points at, or its served/ folder")
    index = table.column_names.index("surface")
    return table.set_column(index, "surface", pc.cast(table["surface"], pa.string()))


def read_outcomes(path: Path) -> pa.Table:
    """Outcomes as (request_id, candidate_id, task: string, label: int8 0/1, event_time: timestamp UTC)."""
    if path.is_file() and path.suffix.lower() == ".csv":
        try:
            table = pacsv.read_csv(path)
        except pa.ArrowInvalid as exc:
            raise ArtifactError(path, "", f"cannot read the outcomes CSV: {exc}", "fix the file") from None
    else:
        outcomes = path / "outcomes" if (path / "outcomes").is_dir() else path
        table = _dataset(outcomes, "outcomes file").to_table()
    for name in OUTCOME_COLUMNS:
        if name not in table.column_names:
            raise ArtifactError(path, name, "outcomes need request_id, candidate_id, task, label, event_time",
                                f"add a {name} column")
    out = {}
    for name in ("request_id", "candidate_id", "task"):
        out[name] = pc.cast(table[name], pa.string())
    label = table["label"]
    try:
        labels = pc.cast(label, pa.int8())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise ArtifactError(path, "label", f"type {label.type} is not a 0/1 label", "store 0 or 1") from None
    bad = pc.sum(pc.cast(pc.invert(pc.is_in(labels, pa.array([0, 1], pa.int8()))), pa.int64())).as_py()
    if bad:
        raise ArtifactError(path, "label", f"{bad} labels are not 0 or 1 (or are empty)", "store 0 or 1")
    out["label"] = labels
    out["event_time"] = _timestamps(table["event_time"], path)
    return pa.table(out)


def _timestamps(column: pa.ChunkedArray, path: Path) -> pa.ChunkedArray:
    kind = column.type
    try:
        if pa.types.is_timestamp(kind):
            return pc.cast(pc.assume_timezone(column, "UTC") if kind.tz is None else column, _TS)
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            return pc.cast(pc.cast(column, pa.timestamp("us", tz="UTC")), _TS)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    raise ArtifactError(path, "event_time", f"type {kind} is not a timestamp", "write ISO 8601 times with a zone")


@dataclass(frozen=True)
class LabelWindows:
    """Per logged model version: its tasks' label windows (hours; 0 = immediate) and feature names."""

    manifests: dict[tuple[str, str], ModelManifest]

    @classmethod
    def from_store(cls, store: Path, versions: list[tuple[str, str]]) -> LabelWindows:
        manifests = {}
        for model, version in versions:
            folder = store / model / version
            if not (folder / "manifest.json").is_file():
                raise ArtifactError(folder, "manifest.json", f"the served log names {model} version {version}",
                                    "pass --model-store the folder that holds that bundle")
            manifests[(model, version)] = load_manifest(folder, verify_sha=False)
        return cls(manifests)

    def tasks(self) -> list[str]:
        """Every task of every logged version, in manifest order (first version first)."""
        return list(dict.fromkeys(t for m in self.manifests.values() for t in m.task_names()))

    def numeric_features(self) -> list[str]:
        return list(dict.fromkeys(f.name for m in self.manifests.values() for f in m.features.numeric))

    def categorical_features(self) -> list[str]:
        return list(dict.fromkeys(f.name for m in self.manifests.values() for f in m.features.categorical))

    def hours(self, model: str, version: str, tasks: list[str]) -> npt.NDArray[np.float64]:
        """[T] the label window of each task in hours (0 = immediate); NaN for a task the version lacks."""
        manifest = self.manifests[(model, version)]
        out = np.full(len(tasks), np.nan)
        for t, name in enumerate(tasks):
            spec = manifest.task(name)
            if spec is not None:
                out[t] = spec.label_window_hours or 0.0
        return out
