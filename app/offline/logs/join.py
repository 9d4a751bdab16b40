"""`fusionrank logs join`: one row per served candidate with per-task labels and maturity masks.

Rules, per logged candidate and task T (window W = the task's `label_window_hours` in the manifest of the
model version that served it; none = immediate, 0):
- an outcome counts when it names the row's (request_id, candidate_id) and task, happened at or before
  `as_of`, and no later than the impression time + W (a later one is late, ignored);
- the row is mature for T when impression time + W <= `as_of` and the candidate was served (a removed
  candidate was never seen: never mature);
- ``mask_T`` = 1 when mature; ``label_T`` = the largest counted label (1 if any outcome was 1), 0 when
  mature without an outcome, and null when not mature (unobserved, not negative) -- what every offline
  tool reads as "no label".
Also per task ``logit_T`` and ``p_T`` (calibrated) from the served maps, ``group_id`` (an int64 hash of
request_id the tuners and the holdout split use), and the features as served spread into one column per
feature when they were logged. The Spark engine (`app.offline.logs.spark_join`) follows the same rules.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from app.artifacts.served_log import joined_log_fields, joined_metadata
from app.errors import ArtifactError
from app.offline.logs.inputs import LabelWindows, read_outcomes, read_served

__all__ = [
    "ATTRIBUTE_MAPS", "JoinSummary", "attribute_names", "group_ids", "join_logs", "joined_schema", "write_joined"
]

_US_PER_HOUR = 3_600_000_000


class JoinSummary:
    """What a join did: rows written, outcomes that matched a served candidate, did not, or came after as_of."""

    def __init__(self, rows: int, outcomes: int, matched: int, unmatched: int, after_as_of: int) -> None:
        self.rows, self.outcomes, self.matched, self.unmatched, self.after_as_of = (
            rows, outcomes, matched, unmatched, after_as_of
        )

    def lines(self) -> list[str]:
        return [
            f"served rows: {self.rows}",
            f"outcomes: {self.outcomes} ({self.matched} matched a served candidate, {self.unmatched} did not,"
            f" {self.after_as_of} after --as-of ignored)",
        ]


def group_ids(request_ids: pa.Array | pa.ChunkedArray) -> pa.Array:
    """int64 per row: the first 60 bits of sha256(request_id) (Spark: conv(substr(sha2(id, 256), 1, 15), 16, 10))."""
    encoded = pc.dictionary_encode(request_ids)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    hashes = np.array(
        [int(hashlib.sha256(v.encode()).hexdigest()[:15], 16) for v in encoded.dictionary.to_pylist()],
        dtype=np.int64,
    )
    return pa.array(hashes[encoded.indices.to_numpy(zero_copy_only=False)])


ATTRIBUTE_MAPS = {"attributes_number": pa.float64(), "attributes_string": pa.string(),
                  "attributes_boolean": pa.bool_()}


def attribute_names(served: pa.Table) -> dict[str, list[str]]:
    """Map column -> the attribute names it holds anywhere in the log, sorted."""
    out: dict[str, list[str]] = {}
    for column in ATTRIBUTE_MAPS:
        if column not in served.column_names:
            out[column] = []
            continue
        maps = served[column].combine_chunks()
        out[column] = sorted(str(k) for k in pc.unique(maps.keys).to_pylist())
    return out


def joined_schema(
    tasks: list[str], numeric: list[str], categorical: list[str], as_of: datetime,
    attributes: dict[str, list[str]] | None = None,
) -> pa.Schema:
    fields = [f.with_type(pa.string()) if f.name == "surface" else f for f in joined_log_fields()]
    fields.insert(1, pa.field("group_id", pa.int64(), nullable=False))
    for task in tasks:
        fields += [
            pa.field(f"logit_{task}", pa.float64()), pa.field(f"p_{task}", pa.float64()),
            pa.field(f"label_{task}", pa.int8()), pa.field(f"mask_{task}", pa.int8(), nullable=False),
        ]
    fields += [pa.field(name, pa.float64()) for name in numeric]
    fields += [pa.field(name, pa.string()) for name in categorical]
    for column, names in (attributes or {}).items():
        fields += [pa.field(name, ATTRIBUTE_MAPS[column]) for name in names]
    names = [f.name for f in fields]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise ArtifactError("manifest", clash[0], "a feature has the name of a joined-log column",
                            "rename the feature, or join without features (--no-features)")
    return pa.schema(fields, metadata=joined_metadata(tasks, as_of.isoformat()))


def join_logs(
    served_path: Path, outcomes_path: Path, as_of: datetime, model_store: Path, *, features: bool = True
) -> tuple[pa.Table, JoinSummary]:
    """The joined table (rows in served-log order) and a summary; `as_of` is timezone-aware."""
    served = read_served(served_path)
    outcomes = read_outcomes(outcomes_path)
    versions = _versions(served)
    windows = LabelWindows.from_store(model_store, versions)
    tasks = windows.tasks()
    logged_features = features and served["features_numeric"].null_count < served.num_rows
    numeric = windows.numeric_features() if logged_features else []
    categorical = windows.categorical_features() if logged_features else []
    attributes = attribute_names(served)
    schema = joined_schema(tasks, numeric, categorical, as_of, attributes)
    n = served.num_rows
    as_of_us = int(as_of.timestamp() * 1_000_000)
    ts = pc.cast(served["ts"], pa.int64()).to_numpy()
    window_us = _window_matrix(served, versions, windows, tasks) * _US_PER_HOUR  # [n, T], NaN: task absent
    shown = served["position"].is_valid().to_numpy(zero_copy_only=False)
    mature = shown[:, None] & (ts[:, None] + window_us <= as_of_us)  # NaN compares False

    known = pc.cast(outcomes["event_time"], pa.int64()).to_numpy() <= as_of_us
    after = int((~known).sum())
    known_outcomes = outcomes.filter(pa.array(known))
    keyed = known_outcomes.filter(
        pc.and_(known_outcomes["request_id"].is_valid(), known_outcomes["candidate_id"].is_valid())
    )
    rows = pa.table({
        "request_id": served["request_id"], "candidate_id": served["candidate_id"],
        "__row": pa.array(np.arange(n, dtype=np.int64)),
    })
    matched = keyed.join(rows, keys=["request_id", "candidate_id"], join_type="inner")
    label = np.full((n, len(tasks)), -1, dtype=np.int8)
    task_index = {t: i for i, t in enumerate(tasks)}
    if matched.num_rows:
        row = matched["__row"].to_numpy()
        t = np.array([task_index.get(v, -1) for v in matched["task"].to_pylist()], dtype=np.int64)
        event = pc.cast(matched["event_time"], pa.int64()).to_numpy()
        ok = t >= 0
        ok[ok] &= event[ok] <= ts[row[ok]] + window_us[row[ok], t[ok]]
        np.maximum.at(label, (row[ok], t[ok]), matched["label"].to_numpy()[ok])
    unmatched = known_outcomes.num_rows - keyed.join(
        rows, keys=["request_id", "candidate_id"], join_type="left semi"
    ).num_rows
    summary = JoinSummary(n, outcomes.num_rows, known_outcomes.num_rows - unmatched, unmatched, after)

    columns: dict[str, pa.Array | pa.ChunkedArray] = {}
    for field in schema:
        name = field.name
        if name == "group_id":
            columns[name] = group_ids(served["request_id"])
        elif name in served.column_names:
            columns[name] = served[name]
    for k, task in enumerate(tasks):
        columns[f"logit_{task}"] = pc.map_lookup(served["logits"], pa.scalar(task), "first")
        columns[f"p_{task}"] = pc.map_lookup(served["predictions"], pa.scalar(task), "first")
        observed = mature[:, k]
        columns[f"label_{task}"] = pa.array(np.maximum(label[:, k], 0), mask=~observed)
        columns[f"mask_{task}"] = pa.array(observed.astype(np.int8))
    for name in numeric:
        columns[name] = pc.map_lookup(served["features_numeric"], pa.scalar(name), "first")
    for name in categorical:
        columns[name] = pc.map_lookup(served["features_categorical"], pa.scalar(name), "first")
    for column, names in attributes.items():
        for name in names:
            columns[name] = pc.map_lookup(served[column], pa.scalar(name), "first")
    table = pa.table([columns[f.name] for f in schema], schema=schema)
    return table, summary


def _versions(served: pa.Table) -> list[tuple[str, str]]:
    pairs = served.select(["model", "model_version"]).group_by(["model", "model_version"]).aggregate([])
    return sorted(zip(pairs["model"].to_pylist(), pairs["model_version"].to_pylist(), strict=True))


def _window_matrix(
    served: pa.Table, versions: list[tuple[str, str]], windows: LabelWindows, tasks: list[str]
) -> npt.NDArray[np.float64]:
    """[n, T] label window in hours of each row's model version per task (NaN: that version lacks the task)."""
    out = np.full((served.num_rows, len(tasks)), np.nan)
    model, version = served["model"], served["model_version"]
    for name, number in versions:
        rows = pc.and_(pc.equal(model, name), pc.equal(version, number)).to_numpy(zero_copy_only=False)
        out[rows] = windows.hours(name, number, tasks)
    return out


def write_joined(table: pa.Table, out: Path) -> None:
    """One Parquet file, written under a temporary name and renamed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_name(f".{out.name}.tmp")
    pq.write_table(table, temp, compression="zstd")
    temp.replace(out)
