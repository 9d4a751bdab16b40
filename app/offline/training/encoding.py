"""Turn record batches into model inputs: a first streaming pass fits the statistics, then `encode`.

First pass (`fit_encoding`): over the train split only, vocabularies (most frequent values first,
OOV index 0 for the rest), mean/std of each numeric feature after its optional log1p, and label
counts; over all rows, the time range and the label cutoff. Statistics are sums, merged batch by
batch, so the result does not depend on how the files are chunked. Labels are checked here: a value
other than 0/1 (or null) fails with the file, column and an example.

Features are encoded by the service's own `FeatureEncoder` (`app.serving.features`), called on a
whole record batch as columns: training, evaluation, the calibration's predictions and `/v1/score`
turn a raw value into a model input with the same code. Training builds it from `feature_schema(...,
training=True)`, whose defaults are `numeric_fill` (a null takes the spec default, else the train
mean); the bundle's manifest gets `feature_schema(..., training=False)` (no spec default = required).

Maturity: a task with `label_window_hours` is masked on rows where event_time + window > cutoff —
the outcome may still arrive, so the row is missing, not a negative.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from app.artifacts.manifest import CategoricalFeature, FeatureSchema, NumericFeature
from app.errors import InvalidRequest
from app.offline.training.event_time import event_seconds, split_bounds, utc_seconds
from app.offline.training.position import position_buckets
from app.offline.training.spec import DatasetError, DatasetSpec, TaskColumn
from app.offline.training.split import SPLITS as SPLIT_NAMES
from app.offline.training.split import GroupSplits, row_splits
from app.offline.training.tabular import TableSource
from app.serving.columns import CandidateColumns, Column, EncodedStrings
from app.serving.features import FeatureEncoder

__all__ = [
    "SPLITS",
    "EncodedRows",
    "FittedEncoding",
    "encode",
    "encode_features",
    "encode_targets",
    "feature_columns",
    "feature_schema",
    "fit_encoding",
]

SPLITS = SPLIT_NAMES  # index = the split code of a row
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class EncodedRows:
    """Rows ready for the model. numeric [R, N] raw, categorical [R, C], labels/mask [R, T]."""

    numeric: F32
    categorical: npt.NDArray[np.int64]
    labels: F32
    mask: F32
    weight: F32  # [R]
    split: npt.NDArray[np.int8]  # [R] index into SPLITS
    segments: dict[str, npt.NDArray[np.str_]]
    # [R] position bucket (`dataset.position`, training only; `position_buckets`), None without one
    position: npt.NDArray[np.int64] | None = None

    def __len__(self) -> int:
        return len(self.numeric)

    def take(self, index: npt.NDArray[np.intp]) -> EncodedRows:
        return EncodedRows(
            self.numeric[index],
            self.categorical[index],
            self.labels[index],
            self.mask[index],
            self.weight[index],
            self.split[index],
            {k: v[index] for k, v in self.segments.items()},
            None if self.position is None else self.position[index],
        )

    def slice(self, start: int, stop: int) -> EncodedRows:
        """Rows [start, stop) as views, no copy."""
        return EncodedRows(
            self.numeric[start:stop],
            self.categorical[start:stop],
            self.labels[start:stop],
            self.mask[start:stop],
            self.weight[start:stop],
            self.split[start:stop],
            {k: v[start:stop] for k, v in self.segments.items()},
            None if self.position is None else self.position[start:stop],
        )

    @staticmethod
    def concat(parts: list[EncodedRows]) -> EncodedRows:
        first = parts[0]
        return EncodedRows(
            np.concatenate([p.numeric for p in parts]),
            np.concatenate([p.categorical for p in parts]),
            np.concatenate([p.labels for p in parts]),
            np.concatenate([p.mask for p in parts]),
            np.concatenate([p.weight for p in parts]),
            np.concatenate([p.split for p in parts]),
            {k: np.concatenate([p.segments[k] for p in parts]) for k in first.segments},
            None if first.position is None else np.concatenate([p.position for p in parts if p.position is not None]),
        )


@dataclass
class FittedEncoding:
    """What the first pass learned; serialisable to the run folder (`to_dict`/`from_dict`)."""

    vocabularies: dict[str, list[str]]
    numeric_fill: list[float]  # raw value used for a null
    numeric_mean: list[float]  # of the transformed value (log1p when `log`)
    numeric_std: list[float]
    valid_start: float  # seconds since the epoch
    test_start: float
    label_cutoff: float
    time_min: float
    time_max: float
    rows: dict[str, int] = field(default_factory=dict)  # per split
    positives: dict[str, int] = field(default_factory=dict)  # per task, train split, observed rows
    observed: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FittedEncoding:
        return cls(**data)


def _labels(batch: pa.RecordBatch, task: TaskColumn, path: Path) -> tuple[F32, F32]:
    """(label, observed) for one task; null = not observed; anything but 0/1 is an error."""
    column = batch.column(task.label)
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_boolean(column.type)):
        raise DatasetError(
            path,
            task.label,
            f"label of task {task.name!r} has type {column.type}",
            "store labels as 0/1 numbers (or booleans)",
        )
    values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
    present = ~np.isnan(values)
    bad = present & (values != 0) & (values != 1)
    if bad.any():
        example = values[np.flatnonzero(bad)[0]]
        raise DatasetError(
            path,
            task.label,
            f"label of task {task.name!r} has value {example:g}; labels must be 0 or 1",
            "binarise the outcome (e.g. rating >= 4 -> 1) or mark missing labels with null / a mask column",
        )
    observed = present.astype(np.float32)
    if task.mask is not None:
        mask = batch.column(task.mask).cast(pa.float64()).to_numpy(zero_copy_only=False)
        observed *= np.nan_to_num(mask, nan=0.0) > 0
    return np.where(present, values, 0.0).astype(np.float32), observed


def fit_encoding(source: TableSource) -> FittedEncoding:
    """One streaming pass over the files: statistics of the train split, label checks, time range."""
    spec = source.spec
    valid_start, test_start = split_bounds(spec)
    groups = GroupSplits()
    train_end, test_begin = -np.inf, np.inf  # for a split by column or files: the time window of train / test
    counts: dict[str, Counter[str]] = {name: Counter() for name in spec.categorical}
    n_numeric = len(spec.numeric)
    sums, squares, present = np.zeros(n_numeric), np.zeros(n_numeric), np.zeros(n_numeric)
    raw_sums = np.zeros(n_numeric)
    rows = dict.fromkeys(SPLITS, 0)
    positives = {t.name: 0 for t in spec.tasks}
    observed = {t.name: 0 for t in spec.tasks}
    time_min, time_max = np.inf, -np.inf
    for path, batch in source.batches():
        seconds = event_seconds(batch.column(spec.event_time), path, spec.event_time)
        time_min, time_max = (
            min(time_min, float(seconds.min(initial=np.inf))),
            max(time_max, float(seconds.max(initial=-np.inf))),
        )
        split = row_splits(batch, spec, path, seconds, valid_start, test_start)
        groups.add(batch.column(spec.group_id), split)
        train_end = max(train_end, float(seconds[split == 0].max(initial=-np.inf)))
        test_begin = min(test_begin, float(seconds[split == 2].min(initial=np.inf)))
        for i, name in enumerate(SPLITS):
            rows[name] += int(np.sum(split == i))
        train = split == 0
        for task in spec.tasks:
            label, seen = _labels(batch, task, path)
            positives[task.name] += int(np.sum(label * seen * train))
            observed[task.name] += int(np.sum(seen * train))
        if not train.any():
            continue
        for name in spec.categorical:
            values = pc.cast(batch.column(name), pa.string()).filter(pa.array(train))
            counted = pc.value_counts(values.drop_null())
            counts[name].update(
                dict(zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist(), strict=True))
            )
        for j, feature in enumerate(spec.numeric):
            raw = _numeric(batch, feature.name, path)[train]
            raw = raw[~np.isnan(raw)]
            x = np.log1p(np.clip(raw, 0, None)) if feature.log else raw
            sums[j] += x.sum()
            squares[j] += (x * x).sum()
            present[j] += len(x)
            raw_sums[j] += raw.sum()
    groups.check(source.files[0], spec.group_id)
    if rows["train"] == 0 and spec.split.by != "time":
        raise DatasetError(
            source.files[0],
            f"dataset.split.{spec.split.by}",
            "no row is in the train split",
            "check the split column's values / the train file",
        )
    if spec.split.by != "time":  # recorded as the end of the training window (manifest) and the test start
        valid_start, test_start = train_end, test_begin
    if rows["train"] == 0:
        raise DatasetError(
            source.files[0],
            "dataset.split.valid_start",
            "no row falls before valid_start, so nothing to train on",
            f"set valid_start inside the data's time range ({_iso(time_min)} .. {_iso(time_max)})",
        )
    for j, feature in enumerate(spec.numeric):
        if present[j] == 0 and feature.default is None:
            raise DatasetError(
                source.files[0],
                feature.name,
                "every training value is null",
                "give the feature a default in the spec, or drop it",
            )
    count = np.maximum(present, 1)
    mean = sums / count
    std = np.sqrt(np.maximum(squares / count - mean * mean, 0.0))
    fill = [f.default if f.default is not None else float(raw_sums[j] / count[j]) for j, f in enumerate(spec.numeric)]
    cutoff = utc_seconds(spec.split.label_cutoff) if spec.split.label_cutoff else time_max
    return FittedEncoding(
        vocabularies={
            name: _vocabulary(counts[name], spec.max_vocabulary, spec.min_count, source.files[0], name)
            for name in spec.categorical
        },
        numeric_fill=[float(v) for v in fill],
        numeric_mean=[float(v) for v in mean],
        numeric_std=[float(v) for v in std],
        valid_start=valid_start,
        test_start=test_start,
        label_cutoff=cutoff,
        time_min=float(time_min),
        time_max=float(time_max),
        rows=rows,
        positives=positives,
        observed=observed,
    )


def encode(batch: pa.RecordBatch, spec: DatasetSpec, fitted: FittedEncoding, path: Path) -> EncodedRows:
    """One record batch -> model inputs, labels, maturity-aware masks, weights and segments."""
    numeric, categorical = encode_features(
        FeatureEncoder(feature_schema(spec, fitted, training=True)), batch, spec, path
    )
    targets = encode_targets(
        batch,
        spec,
        path,
        label_cutoff=fitted.label_cutoff,
        valid_start=fitted.valid_start,
        test_start=fitted.test_start,
    )
    where = spec.position
    position = None if where is None else position_buckets(batch.column(where.column), where, path)
    return EncodedRows(numeric, categorical, *targets, position)



def encode_features(
    encoder: FeatureEncoder, batch: pa.RecordBatch, spec: DatasetSpec, path: Path
) -> tuple[F32, npt.NDArray[np.int64]]:
    """The spec's features of one record batch through the service's encoder: numeric [R, N], categorical [R, C]."""
    try:
        encoded = encoder.encode(feature_columns(batch, spec, path), {})
    except InvalidRequest as exc:  # e.g. beyond float32, or a required feature null with a bundle's schema
        detail = exc.details[0]
        raise DatasetError(path, detail.field or "", exc.message, detail.fix or "clip or null such values") from None
    return encoded.numeric, encoded.categorical


def encode_targets(
    batch: pa.RecordBatch, spec: DatasetSpec, path: Path, *, label_cutoff: float, valid_start: float, test_start: float
) -> tuple[F32, F32, F32, npt.NDArray[np.int8], dict[str, npt.NDArray[np.str_]]]:
    """(labels [R, T], maturity-aware mask [R, T], weight [R], split [R], segments) of one record batch."""
    seconds = event_seconds(batch.column(spec.event_time), path, spec.event_time)
    labels = np.empty((batch.num_rows, len(spec.tasks)), dtype=np.float32)
    mask = np.empty_like(labels)
    for t, task in enumerate(spec.tasks):
        labels[:, t], mask[:, t] = _labels(batch, task, path)
        if task.label_window_hours is not None:
            mask[:, t] *= seconds + task.label_window_hours * 3600.0 <= label_cutoff
    if spec.sample_weight is not None:
        raw_weight = _numeric(batch, spec.sample_weight, path)
        if np.isnan(raw_weight).any() or (raw_weight < 0).any():
            raise DatasetError(
                path,
                spec.sample_weight,
                "sample weights must be non-negative and not null",
                "fill missing weights (e.g. with 1) and clip negatives",
            )
        weight = raw_weight.astype(np.float32)
    else:
        weight = np.ones(batch.num_rows, dtype=np.float32)
    segments = {
        name: np.asarray(
            pc.fill_null(pc.cast(batch.column(name), pa.string()), "").to_numpy(zero_copy_only=False)
        ).astype(np.str_)
        for name in spec.segments
    }
    return labels, mask, weight, row_splits(batch, spec, path, seconds, valid_start, test_start), segments


def feature_schema(spec: DatasetSpec, fitted: FittedEncoding, *, training: bool) -> FeatureSchema:
    """The model's inputs in order, with the fitted vocabularies.

    training=True: every numeric null takes `fitted.numeric_fill` (what training feeds the model);
    training=False: the spec's default, None making the feature required (what a manifest declares).
    """
    return FeatureSchema(
        numeric=[
            NumericFeature(name=f.name, default=fitted.numeric_fill[j] if training else f.default)
            for j, f in enumerate(spec.numeric)
        ],
        categorical=[CategoricalFeature(name=n, vocabulary=fitted.vocabularies[n]) for n in spec.categorical],
    )


def feature_columns(batch: pa.RecordBatch, spec: DatasetSpec, path: Path) -> CandidateColumns:
    """The spec's features of a record batch as the service's columnar candidates.

    Numeric: float64 [R] with NaN for null (type and infinity checked, naming the file); categorical:
    cast to string and dictionary-encoded (code -1 = null), as the Arrow decoder of /v1/score does.
    """
    columns: dict[str, Column] = {f.name: _numeric(batch, f.name, path) for f in spec.numeric}
    for name in spec.categorical:
        encoded = pc.dictionary_encode(pc.cast(batch.column(name), pa.string()))
        codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.intp)
        columns[name] = EncodedStrings(codes=codes, distinct=encoded.dictionary.to_pylist())
    return CandidateColumns(size=batch.num_rows, columns=columns)


def _numeric(batch: pa.RecordBatch, name: str, path: Path) -> npt.NDArray[np.float64]:
    column = batch.column(name)
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_boolean(column.type)):
        raise DatasetError(
            path,
            name,
            f"numeric column has type {column.type}",
            "store it as a number, or declare it under `categorical`",
        )
    values: npt.NDArray[np.float64] = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
    if np.isinf(values).any():
        raise DatasetError(path, name, "numeric column has infinite values", "clip or null them")
    return values


def _vocabulary(counts: Counter[str], limit: int, min_count: int, path: Path, name: str) -> list[str]:
    ranked = sorted((item for item in counts.items() if item[1] >= min_count), key=lambda kv: (-kv[1], kv[0]))
    vocabulary = [value for value, _ in ranked[:limit]]
    if not vocabulary:
        raise DatasetError(
            path, name, "no value occurs often enough in the train split", "lower dataset.min_count or drop the feature"
        )
    return vocabulary


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat() if np.isfinite(seconds) else "no rows"
