"""`fusionrank predict`: a run's or a bundle's predictions on a log, in the file `calibrate fit` reads.

One row per impression of the chosen splits, streamed batch by batch into Parquet (or CSV):
``group_id`` (the spec's group column, an integer for `calibrate fit`'s hold-out key),
``candidate_id``, ``split`` (train / valid / test by the spec's split times), then per task T
``logit_T``, ``label_T`` (0/1) and ``mask_T`` (1 = observed and mature, as in training), then every
categorical feature and segment column with its raw value (the `--segment` columns of `calibrate`).

- From a run folder (`--run`): the run's spec, fitted encoding and torch model, the rows encoded as
  in training.
- From a bundle (`--model` + `--spec`): the spec says which columns hold ids, labels and times; the
  features go through the bundle's manifest with the service's `FeatureEncoder` and the logits come
  from model.onnx through the service's `ModelRunner`, as `/v1/score` computes them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from app.artifacts.loading import load_manifest
from app.errors import ArtifactError
from app.offline.training.encoding import (
    SPLITS,
    EncodedRows,
    encode,
    encode_features,
    encode_targets,
)
from app.offline.training.event_time import event_seconds, split_bounds, utc_seconds
from app.offline.training.spec import DatasetSpec, TrainSpec, load_spec
from app.offline.training.tabular import TableSource
from app.serving.features import FeatureEncoder
from app.serving.model_runner import ModelRunner

__all__ = ["PredictResult", "predict_bundle", "predict_run"]

MODEL_BATCH = 65_536


@dataclass(frozen=True)
class PredictResult:
    path: Path
    rows: int
    tasks: list[str]


def predict_run(run: Path, data: Path, out: Path, *, splits: Sequence[str] = ("valid", "test")) -> PredictResult:
    """Predictions of the run folder RUN's model (torch) on DATA, for the rows of `splits`."""
    import torch

    from app.offline.training.run_folder import RunFolder

    spec, fitted, model, _ = RunFolder(run).load()
    source = TableSource.open(data, spec.dataset, batch_rows=spec.training.read_batch_rows)

    def rows() -> Iterator[tuple[pa.RecordBatch, EncodedRows, npt.NDArray[np.float32]]]:
        with torch.no_grad():
            for path, batch in source.batches():
                encoded = encode(batch, spec.dataset, fitted, path)
                logits = [
                    model(
                        torch.from_numpy(encoded.numeric[i : i + MODEL_BATCH]),
                        torch.from_numpy(encoded.categorical[i : i + MODEL_BATCH]),
                    ).numpy()
                    for i in range(0, len(encoded), MODEL_BATCH)
                ]
                yield batch, encoded, np.concatenate(logits) if logits else _no_logits(spec)

    return _write(rows(), spec.dataset, out, splits)


def predict_bundle(
    bundle: Path, spec_path: Path, data: Path, out: Path, *, splits: Sequence[str] = ("valid", "test")
) -> PredictResult:
    """Predictions of the bundle BUNDLE (model.onnx, with the service's encoder) on DATA read by SPEC."""
    manifest = load_manifest(bundle)
    spec = load_spec(spec_path)
    dataset = spec.dataset
    wanted = ([f.name for f in manifest.features.numeric], [f.name for f in manifest.features.categorical])
    given = ([f.name for f in dataset.numeric], list(dataset.categorical))
    if wanted != given:
        raise ArtifactError(
            spec_path,
            "dataset",
            f"the spec's features {given} are not the bundle's {wanted} (in that order)",
            f"use the spec the bundle {manifest.name}/{manifest.version} was trained with",
        )
    tasks = [t.name for t in dataset.tasks]
    if tasks != manifest.task_names():
        raise ArtifactError(
            spec_path,
            "dataset.tasks",
            f"tasks {tasks} are not the bundle's {manifest.task_names()}",
            "use the spec the bundle was trained with",
        )
    source = TableSource.open(data, dataset, batch_rows=spec.training.read_batch_rows)
    encoder = FeatureEncoder(manifest.features)
    runner = ModelRunner(bundle / "model.onnx", manifest)
    split = dataset.split
    valid_start, test_start = split_bounds(dataset)
    cutoff = utc_seconds(split.label_cutoff) if split.label_cutoff else _last_event(source)

    def rows() -> Iterator[tuple[pa.RecordBatch, EncodedRows, npt.NDArray[np.float32]]]:
        for path, batch in source.batches():
            numeric, categorical = encode_features(encoder, batch, dataset, path)
            targets = encode_targets(
                batch, dataset, path, label_cutoff=cutoff, valid_start=valid_start, test_start=test_start
            )
            logits = [
                runner.run(numeric[i : i + MODEL_BATCH], categorical[i : i + MODEL_BATCH])
                for i in range(0, len(numeric), MODEL_BATCH)
            ]
            yield (
                batch,
                EncodedRows(numeric, categorical, *targets),
                (np.concatenate(logits) if logits else _no_logits(spec)),
            )

    return _write(rows(), dataset, out, splits)


def _no_logits(spec: TrainSpec) -> npt.NDArray[np.float32]:
    return np.zeros((0, len(spec.dataset.tasks)), dtype=np.float32)


def _last_event(source: TableSource) -> float:
    """The label cutoff when the spec gives none: the last event time in the data (as training does)."""
    last = -np.inf
    for path, batch in source.batches():
        seconds = event_seconds(batch.column(source.spec.event_time), path, source.spec.event_time)
        last = max(last, float(seconds.max(initial=-np.inf)))
    return last


def _write(
    scored: Iterator[tuple[pa.RecordBatch, EncodedRows, npt.NDArray[np.float32]]],
    spec: DatasetSpec,
    out: Path,
    splits: Sequence[str],
) -> PredictResult:
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown or not splits:
        raise ArtifactError("--split", "", f"unknown split(s) {unknown}", f"use one or more of {list(SPLITS)}")
    keep = np.array([name in splits for name in SPLITS])
    tasks = [t.name for t in spec.tasks]
    text = list(dict.fromkeys([*spec.categorical, *spec.segments]))
    out.parent.mkdir(parents=True, exist_ok=True)
    csv = out.suffix.lower() == ".csv"
    writer: pq.ParquetWriter | pacsv.CSVWriter | None = None
    rows = 0
    try:
        for batch, encoded, logits in scored:
            chosen = keep[encoded.split]
            columns: dict[str, pa.Array] = {
                "group_id": batch.column(spec.group_id).filter(chosen),
                "candidate_id": batch.column(spec.candidate_id).filter(chosen),
                "split": pa.array(np.array(SPLITS)[encoded.split[chosen]], pa.string()),
            }
            for t, task in enumerate(tasks):
                columns[f"logit_{task}"] = pa.array(logits[chosen, t].astype(np.float64))
                columns[f"label_{task}"] = pa.array(encoded.labels[chosen, t].astype(np.int8))
                columns[f"mask_{task}"] = pa.array(encoded.mask[chosen, t].astype(np.int8))
            for name in text:
                columns[name] = pc.cast(batch.column(name), pa.string()).filter(chosen)
            table = pa.table(columns)
            if writer is None:
                writer = pacsv.CSVWriter(out, table.schema) if csv else pq.ParquetWriter(out, table.schema)
            writer.write_table(table)
            rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise ArtifactError(out, "", "the log has no rows", "check --data")
    return PredictResult(out, rows, tasks)
