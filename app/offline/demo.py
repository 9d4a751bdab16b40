"""`fusionrank demo`: synthetic log -> trained multi-task model -> ONNX -> calibration -> bundle.

Periods of the synthetic log: train on days [0, 21), fit calibration on [21, 25), hold out [25, 28).
Everything is seeded, and timestamps come from the data, so a seed reproduces the bundle byte for byte.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import yaml

from app import __version__
from app.artifacts.calibration import BeforeAfter, CalibrationFile, FittedFor
from app.artifacts.common import sha256_file
from app.artifacts.manifest import (
    CategoricalFeature,
    FeatureSchema,
    ModelManifest,
    NumericFeature,
    ParityCheck,
    TaskSpec,
    TrainingWindow,
)
from app.offline.calibration import (
    CalibrationStats,
    FitConfig,
    OfflineCalibration,
    fit_task,
    held_out_metrics,
)
from app.offline.metrics import summary
from app.offline.synthetic import generator as syn
from app.offline.training.demo_fit import TrainConfig, TrainingArrays, fit_ranker, predict_logits
from app.offline.training.models.shared_bottom import MultiTaskRanker
from app.offline.training.onnx_export import PARITY_BATCH_SIZES, PARITY_TOLERANCE, export_onnx, parity_max_abs_diff
from app.serving.calibration import sigmoid
from app.serving.golden import write_golden
from app.serving.model_runner import ModelRunner

__all__ = ["DemoConfig", "DemoResult", "run_demo"]

MODEL_NAME = "demo_ranker"
MODEL_VERSION = "1"
CALIBRATION_VERSION = "1"
SURFACE = "home"
POLICY_VERSION = "1"
LOG_NUMERIC = {"user_activity", "user_age_days", "item_price", "item_age_hours", "item_popularity"}
USER_FEATURES = ("user_activity", "user_age_days", "user_tenure", "device")
# Positives of the rare tasks weigh more in training; this over-predicts, and calibration repairs it.
POS_WEIGHT = (1.0, 2.0, 2.0, 4.0)


@dataclass(frozen=True)
class DemoConfig:
    seed: int = 7
    rows: int = 300_000
    epochs: int = 3
    sample_candidates: int = 40
    show_progress: bool = True
    logs: bool = False  # also write demo_data/logs.parquet (calibrated predictions) for tune/simulate


@dataclass(frozen=True)
class DemoResult:
    bundle_dir: Path
    policy_path: Path
    predictions_path: Path | None
    manifest: ModelManifest
    calibration: CalibrationFile
    logs_path: Path | None = None


def run_demo(out: Path, config: DemoConfig) -> DemoResult:
    # One torch thread: with several, OpenMP may change the thread count under load, which changes
    # the order of floating-point reductions and so the weights; one thread makes a seed reproducible.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run_demo(out, config)
    finally:
        torch.set_num_threads(threads)


def _run_demo(out: Path, config: DemoConfig) -> DemoResult:
    log = syn.generate_log(config.rows, config.seed)
    train, calib, holdout = log.period(0, 21), log.period(21, 25), log.period(25, syn.DAYS)
    vocabularies = {name: sorted(set(train.categorical[name].tolist())) for name in syn.CATEGORICAL}
    encode = _Encoder(vocabularies)
    train_x = encode(train)
    log_flags = [name in LOG_NUMERIC for name in syn.NUMERIC]
    torch.manual_seed(config.seed)  # weight initialisation
    transformed = np.where(log_flags, np.log1p(np.clip(train_x.numeric, 0, None)), train_x.numeric)
    model = MultiTaskRanker(
        numeric_mean=transformed.mean(axis=0), numeric_std=transformed.std(axis=0),
        vocabulary_sizes=[len(vocabularies[n]) for n in syn.CATEGORICAL], n_tasks=len(syn.TASKS),
        log_numeric=log_flags,
    )
    fit_ranker(
        model, train_x, TrainConfig(epochs=config.epochs, seed=config.seed, pos_weight=POS_WEIGHT,
                                    show_progress=config.show_progress),
        syn.TASKS,
    )

    bundle_dir = out / "model_store" / MODEL_NAME / MODEL_VERSION
    (bundle_dir / "calibration").mkdir(parents=True, exist_ok=True)
    model_path = bundle_dir / "model.onnx"
    holdout_x = encode(holdout)
    export_onnx(model, model_path, holdout_x.numeric, holdout_x.categorical)
    parity = parity_max_abs_diff(model, model_path, holdout_x.numeric, holdout_x.categorical)

    holdout_logits = predict_logits(model, holdout_x.numeric, holdout_x.categorical).astype(np.float64)
    calib_logits = predict_logits(model, *_inputs(encode(calib))).astype(np.float64)
    manifest = ModelManifest(
        schema_version=1, name=MODEL_NAME, version=MODEL_VERSION,
        tasks=[TaskSpec(name=t, polarity=syn.POLARITY[t],
                        label_window_hours=syn.LABEL_WINDOW_HOURS[t]) for t in syn.TASKS],
        features=FeatureSchema(
            numeric=[NumericFeature(name=n, default=None if n in USER_FEATURES else 0.0) for n in syn.NUMERIC],
            categorical=[CategoricalFeature(name=n, vocabulary=vocabularies[n]) for n in syn.CATEGORICAL],
        ),
        model_sha256=sha256_file(model_path),
        training_window=TrainingWindow(start=syn.event_time(0), end=syn.event_time(21 * 24)),
        metrics={t: _masked_summary(sigmoid(holdout_logits[:, i]), holdout, i) for i, t in enumerate(syn.TASKS)},
        parity=ParityCheck(max_abs_diff=parity, batch_sizes=list(PARITY_BATCH_SIZES), tolerance=PARITY_TOLERANCE),
        created_at=syn.event_time(syn.DAYS * 24),
        code_version=f"fusionrank {__version__}",
    )
    _write_json(bundle_dir / "manifest.json", manifest.model_dump(mode="json"))

    calibration = _fit_calibration(manifest, calib, calib_logits, holdout, holdout_logits)
    _write_json(bundle_dir / "calibration" / f"{CALIBRATION_VERSION}.json", calibration.model_dump(mode="json"))
    sample = _sample_request(holdout, config.sample_candidates)
    _write_json(bundle_dir / "sample_request.json", sample)
    # The golden batch: the exported model's logits for the sample request, checked at every load.
    write_golden(bundle_dir, manifest, ModelRunner(model_path, manifest), sample)

    policy_path = out / "policies" / SURFACE / f"{POLICY_VERSION}.yaml"
    policy_path.parent.mkdir(parents=True, exist_ok=True)
    policy_path.write_text(yaml.safe_dump(demo_policy(), sort_keys=False), encoding="utf-8")
    (policy_path.parent / "active").write_text(f"{POLICY_VERSION}\n", encoding="utf-8")
    predictions_path = _write_predictions(out / "demo_data" / "predictions.parquet", holdout, holdout_logits)
    logs_path = None
    if config.logs:
        from app.offline.tuning.demo_logs import demo_log_columns, write_log
        from app.serving.calibration import CalibrationSet

        calibrated = CalibrationSet(calibration, manifest).apply(holdout_logits, holdout_x.categorical)
        logs_path = write_log(out / "demo_data" / "logs.parquet", demo_log_columns(holdout, calibrated))
    return DemoResult(bundle_dir, policy_path, predictions_path, manifest, calibration, logs_path)


class _Encoder:
    def __init__(self, vocabularies: dict[str, list[str]]) -> None:
        self.lookups = {n: {v: i + 1 for i, v in enumerate(vocab)} for n, vocab in vocabularies.items()}

    def __call__(self, log: syn.DemoLog) -> TrainingArrays:
        categorical = np.stack(
            [np.array([self.lookups[n].get(v, 0) for v in log.categorical[n].tolist()], dtype=np.int64)
             for n in syn.CATEGORICAL], axis=1,
        )
        return TrainingArrays(
            numeric=log.numeric.astype(np.float32), categorical=categorical,
            labels=log.labels.astype(np.float32), mask=log.mask.astype(np.float32),
        )


def _inputs(arrays: TrainingArrays) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    return arrays.numeric, arrays.categorical


def _masked_summary(p: npt.NDArray[np.float64], log: syn.DemoLog, task: int) -> dict[str, float]:
    observed = log.mask[:, task] > 0
    return summary(p[observed], log.labels[observed, task])


def _fit_calibration(
    manifest: ModelManifest, calib: syn.DemoLog, calib_logits: npt.NDArray[np.float64],
    holdout: syn.DemoLog, holdout_logits: npt.NDArray[np.float64],
) -> CalibrationFile:
    """Per task: global Platt + segment corrections on SEGMENTS, fitted on days 21-25 with the same
    statistics and fitter as `calibrate fit`; metrics on days 25-28 through the service's apply."""
    segments = tuple(syn.SEGMENTS)
    vocabularies = {f.name: f.vocabulary for f in manifest.features.categorical if f.name in segments}
    config = FitConfig(method="platt", segments=segments, vocabularies=vocabularies)
    stats = CalibrationStats(tasks=tuple(syn.TASKS), segment_features=segments)
    cells = stats.cell_ids({f: calib.categorical[f] for f in segments}, len(calib))
    for i, task in enumerate(syn.TASKS):
        stats.add(task, calib_logits[:, i], calib.labels[:, i], calib.mask[:, i], cells)
    tasks = {task: fit_task(stats.per_task[task], stats.cells, segments, config) for task in syn.TASKS}
    draft = CalibrationFile(
        schema_version=1, version=CALIBRATION_VERSION,
        model=FittedFor(name=manifest.name, version=manifest.version, sha256=manifest.model_sha256),
        created_at=syn.event_time(syn.DAYS * 24), tasks=tasks,
        notes=("Global Platt scaling per task plus per-value corrections for user_tenure and item_type"
               " (shrunk toward identity), fitted on days 21-25 of the demo log; metrics on days 25-28."),
    )
    applier = OfflineCalibration(draft, list(syn.TASKS), vocabularies)
    categorical = np.stack(
        [applier.codes(f, holdout.categorical[f].tolist()) for f in applier.features], axis=1
    ) if len(holdout) else np.zeros((0, len(applier.features)), dtype=np.int64)
    calibrated = applier.apply(holdout_logits, categorical)
    codes = {f: np.unique(holdout.categorical[f], return_inverse=True)[1].reshape(-1) for f in segments}
    for i, task in enumerate(syn.TASKS):
        observed = holdout.mask[:, i] > 0
        y = holdout.labels[observed, i]
        seg = {f: c[observed] for f, c in codes.items()}
        tasks[task] = tasks[task].model_copy(update={"metrics": BeforeAfter(
            before=held_out_metrics(sigmoid(holdout_logits[observed, i]), y, seg),
            after=held_out_metrics(calibrated[observed, i], y, seg),
        )})
    return draft.model_copy(update={"tasks": tasks})


def _sample_request(holdout: syn.DemoLog, size: int) -> dict[str, Any]:
    """A /v1/score body from held-out rows; three candidates are made ineligible on purpose."""
    _, first = np.unique(holdout.candidate_id, return_index=True)
    rows = np.sort(first)[:size]
    user_row = rows[0]
    numeric_names = list(syn.NUMERIC)
    context_features: dict[str, Any] = {}
    for name in USER_FEATURES:
        if name in syn.CATEGORICAL:
            context_features[name] = str(holdout.categorical[name][user_row])
        else:
            context_features[name] = round(float(holdout.numeric[user_row, numeric_names.index(name)]), 4)
    candidates = []
    for k, row in enumerate(rows.tolist()):
        features: dict[str, Any] = {
            n: round(float(holdout.numeric[row, j]), 4) for j, n in enumerate(numeric_names) if n not in USER_FEATURES
        }
        features.update({n: str(holdout.categorical[n][row]) for n in syn.CATEGORICAL if n not in USER_FEATURES})
        candidates.append({
            "id": f"item-{int(holdout.candidate_id[row])}",
            "features": features,
            "attributes": {
                "creator_id": str(holdout.creator_id[row]),
                "sponsored": bool(holdout.sponsored[row]),
                "eligible": bool(holdout.eligible[row]) and k not in (5, 17, 29),
                "margin": float(holdout.margin[row]),
            },
        })
    return {
        "request_id": "sample-1",
        "surface": SURFACE,
        "context": {
            "user_id": f"user-{int(holdout.user_id[user_row])}",
            "features": context_features,
            "attributes": {"user_segment": context_features["user_tenure"]},
        },
        "candidates": candidates,
        "options": {"debug": False, "return_filtered": True},
    }


def demo_policy() -> dict[str, Any]:
    return {
        "schema_version": 1,
        "surface": SURFACE,
        "name": "home feed: engagement with commerce",
        "version": POLICY_VERSION,
        "model": {"name": MODEL_NAME, "version": MODEL_VERSION},
        "calibration_version": CALIBRATION_VERSION,
        "attributes": {"margin": "number", "creator_id": "string", "sponsored": "boolean", "eligible": "boolean"},
        "utility": [
            {"name": "click", "task": "click", "weight": 1.0},
            {"name": "purchase_margin", "task": "purchase", "weight": 0.05, "attribute": "margin"},
            {"name": "hide_penalty", "task": "hide", "weight": -2.0},
            {"name": "report_penalty", "task": "report", "weight": -20.0},
        ],
        "guardrails": [
            {"name": "report_risk", "task": "report", "above": 0.002},
            {"name": "not_eligible", "attribute": "eligible", "equals": False},
        ],
        "slate": {
            "top_k": 20,
            "max_per_value": [{"name": "creator_diversity", "attribute": "creator_id", "max": 2}],
            "max_matching": [{"name": "sponsored_cap", "attribute": "sponsored", "equals": True, "max": 3}],
        },
        "overrides": [
            {"name": "new_users_safer", "when": {"user_segment": "new"},
             "weights": {"hide_penalty": -4.0}, "thresholds": {"report_risk": 0.001}},
        ],
        "governance": {
            "owner": "ranking-team",
            "approved_by": ["demo-reviewer"],
            "created_at": syn.event_time(syn.DAYS * 24).isoformat(),
            "change_note": "Initial demo policy written by `fusionrank demo`.",
        },
    }


def _write_predictions(path: Path, log: syn.DemoLog, logits: npt.NDArray[np.float64]) -> Path | None:
    """Held-out predictions in the `calibrate fit` input format (needs pyarrow)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    columns: dict[str, Any] = {"group_id": log.group_id, "candidate_id": log.candidate_id}
    for i, task in enumerate(syn.TASKS):
        columns[f"logit_{task}"] = logits[:, i]
        columns[f"label_{task}"] = log.labels[:, i].astype(np.int8)
        columns[f"mask_{task}"] = log.mask[:, i].astype(np.int8)
    for name in syn.CATEGORICAL:
        columns[name] = log.categorical[name]
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
