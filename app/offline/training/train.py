"""`fusionrank train`: spec + log -> run folder (model, checkpoints, report, held-out predictions).

Steps: check the spec's columns against the files; one streaming pass fits the encoding (train split
statistics, label checks); train (streamed from the files each epoch, or from memory when the log is
small — the same batches either way); evaluate on the test split per task and segment; optionally
retrain with each loss option of `training.compare_losses` on the same split and seed, for the
side-by-side table; write everything into the run folder (`app.offline.training.run_folder`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from app.errors import ArtifactError
from app.offline.logs.adapters import joined_dataset
from app.offline.training.batches import InMemoryLog, LogSource, StreamedLog, blocks, split_rows
from app.offline.training.encoding import SPLITS, EncodedRows, FittedEncoding, encode, fit_encoding
from app.offline.training.evaluation import COMPARED, Predictions, evaluate, predict, render_markdown
from app.offline.training.gbt.fit import GBTFit, fit_gbt
from app.offline.training.gbt.report import gbt_markdown, plot_dual_trajectory
from app.offline.training.loop import TrainOutcome, fit
from app.offline.training.losses import TaskLoss
from app.offline.training.models.position import PositionAware, PositionTower, neutralise
from app.offline.training.models.snapshots import PerTaskSnapshots
from app.offline.training.run_folder import RunFolder, build_model, code_version, json_safe, write_json
from app.offline.training.spec import DatasetError, LossSpec, TrainSpec, load_spec
from app.offline.training.tabular import TableSource

__all__ = ["Memory", "RunResult", "train_run", "train_spec"]

Memory = Literal["auto", "stream", "memory"]
STREAM_ABOVE_BYTES = 512 * 1024 * 1024  # "auto" streams logs whose files are larger than this
PARITY_ROWS = 1000
SAMPLE_ROWS = 20


@dataclass(frozen=True)
class RunResult:
    run: Path
    report: dict[str, Any]
    seconds: float


def train_run(
    spec_path: Path,
    data: Path,
    out: Path,
    *,
    seed: int | None = None,
    memory: Memory = "auto",
    show_progress: bool = True,
    resume: bool = False,
) -> RunResult:
    """Read the spec file and train; see `train_spec`."""
    spec = load_spec(spec_path)
    if seed is not None:
        spec = spec.model_copy(update={"training": spec.training.model_copy(update={"seed": seed})})
    return train_spec(spec, data, out, memory=memory, show_progress=show_progress, resume=resume)


def train_spec(
    spec: TrainSpec,
    data: Path,
    out: Path,
    *,
    memory: Memory = "auto",
    show_progress: bool = True,
    resume: bool = False,
) -> RunResult:
    """Train into `out`; with `resume`, continue from the last checkpoint in `out` (same spec but epochs)."""
    started = time.perf_counter()
    spec = spec.model_copy(update={"dataset": joined_dataset(data, spec.dataset)})  # a joined served log as is
    source = TableSource.open(data, spec.dataset, batch_rows=spec.training.read_batch_rows)
    fitted = fit_encoding(source)
    if fitted.rows["valid"] == 0 or fitted.rows["test"] == 0:
        raise DatasetError(
            source.files[0],
            "dataset.split",
            f"rows per split {fitted.rows}: valid and test need rows",
            "move valid_start / test_start inside the data's time range"
            if spec.dataset.split.by == "time"
            else f"give valid and test rows (dataset.split.{spec.dataset.split.by})",
        )
    streamed = memory == "stream" or (
        memory == "auto" and sum(f.stat().st_size for f in source.files) > STREAM_ABOVE_BYTES
    )
    log: LogSource = StreamedLog(source, fitted) if streamed else InMemoryLog.load(source, fitted)
    folder = RunFolder(out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = _last_checkpoint(folder, spec) if resume else None
    if checkpoint is None and folder.checkpoints.exists():  # an earlier run's checkpoints would mislead
        shutil.rmtree(folder.checkpoints)

    gbt: GBTFit | None = None
    position_tower: PositionTower | None = None
    model: torch.nn.Module
    if spec.training.model.kind == "gbt":
        if resume:
            raise ArtifactError(out, "--resume", "a GBT run has no checkpoints to resume", "train without --resume")
        gbt = _train_gbt(spec, fitted, log)
        model, outcome, options = gbt.model, gbt.outcome, _options(spec, fitted)
    else:
        model, outcome, options = _train(spec, fitted, log, folder.checkpoints, show_progress, checkpoint)
        position_tower = _position_tower(outcome.model)
        model = neutralise(model)  # evaluated, saved and exported without position
    tasks = spec.task_names()
    segments = list(spec.dataset.segments)
    thresholds = [t.threshold for t in spec.dataset.tasks]
    test = predict(model, split_rows(log.chunks(), "test"), segments)
    valid = predict(model, split_rows(log.chunks(), "valid"), segments)
    report: dict[str, Any] = {
        "name": spec.name,
        "split": "test",
        "rows": len(test.logits),
        "best_epoch": outcome.best_epoch,
        "task_epochs": outcome.task_epochs,
        "selection": _selection_summary(spec),
        "stopped_early": outcome.stopped_early,
        "infeasible_constraints": outcome.infeasible,
        "rows_per_split": fitted.rows,
        "tasks": evaluate(test, tasks, thresholds),
        "history": [e.to_dict() for e in outcome.history],
        "constraints": [
            {"epoch": e.epoch, "task": task, "lambda": e.lambdas[task], **values}
            for e in outcome.history
            for task, values in e.constraints.items()
        ],
    }
    if gbt is None and position_tower is not None and spec.dataset.position is not None:
        report["position"] = _position_report(spec, position_tower)
    if spec.training.compare_losses:
        report["loss_comparison"] = _compare(spec, fitted, log, test, show_progress)
    if gbt is not None:
        report["gbt"] = gbt.report
        gbt.model.save(folder.gbt)
        if "dual" in gbt.report:
            plot_dual_trajectory(gbt.report["dual"], out / "dual_trajectory.png")
    else:
        torch.save(model.state_dict(), folder.model)
    _save_predictions(folder, "predictions_valid", valid)
    _save_predictions(folder, "predictions_test", test)
    heldout = _first_rows(split_rows(log.chunks(), "test"), PARITY_ROWS)
    folder.save_arrays("heldout", numeric=heldout.numeric, categorical=heldout.categorical)
    write_json(out / "sample_rows.json", _sample_rows(source, fitted, SAMPLE_ROWS))
    write_json(
        folder.run_json,
        json_safe(
            {
                "schema_version": 1,
                "spec": spec.model_dump(mode="json"),
                "encoding": fitted.to_dict(),
                "loss_options": {t: o.__dict__ for t, o in zip(tasks, options, strict=True)},
                "history": report["history"],
                "best_epoch": outcome.best_epoch,
                "task_epochs": outcome.task_epochs,
                "metrics": {t: report["tasks"][t]["overall"] for t in tasks},
                "streamed": streamed,
                "code_version": code_version(),
                "seconds": time.perf_counter() - started,
            }
        ),
    )
    report = json_safe(report)
    write_json(out / "report.json", report)
    markdown = render_markdown(report) + (gbt_markdown(report["gbt"]) if gbt is not None else "")
    if "position" in report:
        markdown += _position_markdown(report["position"])
    (out / "report.md").write_text(markdown, encoding="utf-8")
    return RunResult(out, report, time.perf_counter() - started)


def _options(spec: TrainSpec, fitted: FittedEncoding) -> list[TaskLoss]:
    return [TaskLoss.resolve(spec.loss(t), fitted.positives[t], fitted.observed[t]) for t in spec.task_names()]


def _train_gbt(spec: TrainSpec, fitted: FittedEncoding, log: LogSource) -> GBTFit:
    return fit_gbt(spec, fitted, log, _options(spec, fitted))


def _train(
    spec: TrainSpec,
    fitted: FittedEncoding,
    log: LogSource,
    checkpoints: Path | None,
    show_progress: bool,
    resume: dict[str, Any] | None = None,
) -> tuple[torch.nn.Module, TrainOutcome, list[TaskLoss]]:
    training = spec.training
    options = [TaskLoss.resolve(spec.loss(t), fitted.positives[t], fitted.observed[t]) for t in spec.task_names()]
    sample = None
    if training.constraints:
        sample = _first_rows(split_rows(log.chunks(), "valid"), training.constraint_sample_rows)
    torch.manual_seed(training.seed)  # weight initialisation
    model = build_model(spec, fitted)
    position = spec.dataset.position
    if position is not None:  # a training-only tower on the position column (`neutralise` drops it)
        model = PositionAware(model, PositionTower(position.buckets, len(spec.task_names()), position.dropout))
    threads = torch.get_num_threads()
    torch.set_num_threads(training.torch_threads)
    try:
        outcome = fit(
            model,
            log,
            selection_weights=[spec.selection_weight(t) for t in spec.task_names()],
            tasks=spec.task_names(),
            options=options,
            training=training,
            train_rows=fitted.rows["train"],
            constraint_sample=sample,
            checkpoint_dir=checkpoints,
            show_progress=show_progress,
            resume=resume,
            checkpoint_extra={"spec_key": _spec_key(spec)},
        )
    finally:
        torch.set_num_threads(threads)
    if outcome.model is None:  # fit always sets it; keeps mypy honest
        raise RuntimeError("training returned no model")
    return outcome.model, outcome, options


def _selection_summary(spec: TrainSpec) -> dict[str, Any]:
    """What selection did, in words the report prints: per-task metric and how tasks were combined."""
    selection = spec.training.selection
    return {
        "combine": selection.combine,
        "metrics": {t: selection.metrics.get(t, "logloss") for t in spec.task_names()},
        "weights": {t: spec.selection_weight(t) for t in spec.task_names()} if selection.combine == "sum" else None,
    }


def _compare(
    spec: TrainSpec, fitted: FittedEncoding, log: LogSource, test: Predictions, show_progress: bool
) -> dict[str, dict[str, dict[str, float]]]:
    """Retrain with one loss option on every task (same split, seed, epochs); test metrics side by side."""
    tasks = spec.task_names()
    thresholds = [t.threshold for t in spec.dataset.tasks]
    options = {
        "bce": LossSpec(kind="bce"),
        "focal": LossSpec(kind="focal", gamma=2.0),
        "weighted": LossSpec(kind="weighted", pos_weight="balanced"),
    }
    out: dict[str, dict[str, dict[str, float]]] = {}
    for kind in spec.training.compare_losses:
        variant = spec.model_copy(
            update={"training": spec.training.model_copy(update={"losses": dict.fromkeys(tasks, options[kind])})}
        )
        model, _, _ = _train(variant, fitted, log, None, show_progress)
        evaluated = evaluate(predict(neutralise(model), split_rows(log.chunks(), "test"), []), tasks, thresholds)
        out[kind] = {t: {m: evaluated[t]["overall"].get(m, float("nan")) for m in COMPARED} for t in tasks}
    return out


def _position_tower(model: torch.nn.Module | None) -> PositionTower | None:
    """The trained position tower (of the first per-task snapshot when tasks kept different epochs)."""
    if isinstance(model, PerTaskSnapshots):
        model = model.networks[0]
    return model.tower if isinstance(model, PositionAware) else None


def _position_report(spec: TrainSpec, tower: PositionTower) -> dict[str, Any]:
    """What the position tower learned: per task, each bucket's logit offset relative to position 0."""
    position = spec.dataset.position
    if position is None:
        return {}
    biases = np.asarray(tower.biases())  # [buckets + 1, T]
    relative = biases[: position.buckets] - biases[0]
    return {
        "column": position.column, "buckets": position.buckets, "dropout": position.dropout,
        "neutralised_at_export": True,
        "logit_offset_vs_position_0": {t: relative[:, i].round(4).tolist() for i, t in enumerate(spec.task_names())},
    }


def _position_markdown(position: dict[str, Any]) -> str:
    """report.md: the learned position offsets (first buckets), and that the exported model has none."""
    lines = ["", f"## Position (`{position['column']}`, training only)", "",
             f"A tower over {position['buckets']} position buckets (dropout {position['dropout']}) was added to each"
             " task's logit in training and dropped at export: the test metrics above and the exported model rank"
             " without position. Learned logit offset against position 0:", "",
             "| task | " + " | ".join(f"p{i}" for i in range(min(position["buckets"], 10))) + " |",
             "|---|" + "---:|" * min(position["buckets"], 10)]
    for task, offsets in position["logit_offset_vs_position_0"].items():
        lines.append(f"| {task} | " + " | ".join(f"{v:.2f}" for v in offsets[:10]) + " |")
    return "\n".join(lines) + "\n"


def _spec_key(spec: TrainSpec) -> str:
    """Fingerprint of what a checkpoint depends on: the spec without epochs, patience and comparisons."""
    data = spec.model_dump(mode="json")
    for name in ("epochs", "early_stopping_patience", "compare_losses"):
        data["training"].pop(name)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _last_checkpoint(folder: RunFolder, spec: TrainSpec) -> dict[str, Any]:
    found = sorted(folder.checkpoints.glob("epoch_*.pt")) if folder.checkpoints.is_dir() else []
    if not found:
        raise ArtifactError(folder.checkpoints, "", "no checkpoint to resume from", "train without --resume")
    checkpoint: dict[str, Any] = torch.load(found[-1], map_location="cpu", weights_only=True)
    if checkpoint.get("spec_key") != _spec_key(spec):
        raise ArtifactError(
            found[-1],
            "spec",
            "this checkpoint was written with another spec (only epochs and patience may change)",
            "resume with the spec the run started with, or train into a new folder",
        )
    return checkpoint


def _first_rows(chunks: Iterable[EncodedRows], limit: int) -> EncodedRows:
    for block in blocks(chunks, limit):
        return block
    raise ValueError("no rows")


def _save_predictions(folder: RunFolder, name: str, predictions: Predictions) -> None:
    folder.save_arrays(
        name,
        logits=predictions.logits,
        labels=predictions.labels,
        mask=predictions.mask,
        **{f"segment__{k}": v for k, v in predictions.segments.items()},
    )


def _sample_rows(source: TableSource, fitted: FittedEncoding, limit: int) -> list[dict[str, Any]]:
    """Raw feature values of the first `limit` test rows (categoricals as strings, numerics filled)."""
    spec = source.spec
    rows: list[dict[str, Any]] = []
    for path, batch in source.batches():
        encoded = encode(batch, spec, fitted, path)
        for i in np.flatnonzero(encoded.split == SPLITS.index("test"))[: limit - len(rows)].tolist():
            features: dict[str, Any] = {f.name: float(encoded.numeric[i, j]) for j, f in enumerate(spec.numeric)}
            for name in spec.categorical:
                value = batch.column(name)[i].as_py()
                if value is not None:
                    features[name] = str(value)
            rows.append({"id": str(batch.column(spec.candidate_id)[i].as_py()), "features": features})
        if len(rows) >= limit:
            break
    return rows
