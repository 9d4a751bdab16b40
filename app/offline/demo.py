"""`fusionrank demo`: the path a user runs, on a synthetic log, with a policy and a sample request.

Steps, each the function its CLI command calls:
1. the synthetic log (`app.offline.synthetic`) -> `DIR/demo_data/log.parquet`, and its training spec
   -> `DIR/demo_data/spec.yaml` (train on days [0, 21), validation [21, 25), test [25, 28));
2. `fusionrank train`   (`train_run`)    -> `DIR/demo_data/run/`;
3. `fusionrank export`  (`export_run`)   -> `DIR/model_store/demo_ranker/1/` (ONNX, parity, manifest);
4. `fusionrank predict` (`predict_run`)  -> `DIR/demo_data/predictions.parquet` (days [21, 28));
5. `fusionrank calibrate fit --holdout-split test` (`fit_predictions`: global Platt + corrections for
   `user_tenure` and `item_type`, fitted on days [21, 25), metrics on the held-out days [25, 28))
   -> the bundle's `calibration/1.json`;
then the demo's own extras: a `/v1/score` sample request for the `home` surface from held-out rows
with its golden logits, the `home` policy, and optionally the logged candidate sets for `tune`.

Reproducible: the seed fixes the log, the weights (one torch thread) and so every number; timestamps
are the log's end, not the clock; model.onnx carries no path or source line (`strip_debug_metadata`).
The same seed and options write the same bytes (log, run model, model.onnx, manifest.json,
calibration/1.json, sample_request.json, golden.json, policy) with the same torch, onnx, onnxscript,
onnxruntime and numpy; manifest.json records the git commit that trained, so it differs across commits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from app.artifacts.calibration import CalibrationFile
from app.artifacts.loading import check_calibration_for, load_manifest
from app.artifacts.manifest import ModelManifest
from app.offline.demo_ranking import POLICY_V2, demo_policy_v2, policy_text
from app.offline.synthetic import generator as syn

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["DemoConfig", "DemoResult", "demo_policy", "demo_spec", "print_summary", "run_demo"]

MODEL_NAME = "demo_ranker"
MODEL_VERSION = "1"
CALIBRATION_VERSION = "1"
SURFACE = "home"
POLICY_VERSION = "1"
USER_FEATURES = ("user_activity", "user_age_days", "user_tenure", "device")
LOG_NUMERIC = {"user_activity", "user_age_days", "item_price", "item_age_hours", "item_popularity"}
POS_WEIGHT = {"purchase": 2.0, "hide": 2.0, "report": 4.0}  # weighted BCE: these tasks are over-predicted


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
    predictions_path: Path
    spec_path: Path
    run_dir: Path
    manifest: ModelManifest
    calibration: CalibrationFile
    logs_path: Path | None = None


def demo_spec(config: DemoConfig) -> dict[str, Any]:
    """The `fusionrank train` spec of the demo log (written to `demo_data/spec.yaml`).

    Positives of the rarer tasks weigh more (weighted BCE): the model over-predicts them, which is
    what calibration is there to repair.
    """
    return {
        "schema_version": 1,
        "name": MODEL_NAME,
        "dataset": {
            "group_id": "request_id",
            "candidate_id": "item_id",
            "event_time": "event_time",
            "numeric": [
                {"name": n, "log": n in LOG_NUMERIC, **({} if n in USER_FEATURES else {"default": 0.0})}
                for n in syn.NUMERIC
            ],
            "categorical": list(syn.CATEGORICAL),
            "tasks": [
                {"name": t, "label": t, "polarity": syn.POLARITY[t], "label_window_hours": syn.LABEL_WINDOW_HOURS[t],
                 **({"mask": "hide_logged"} if t == "hide" else {})}
                for t in syn.TASKS
            ],
            "segments": list(syn.SEGMENTS),
            "split": {
                "valid_start": syn.event_time(21 * 24).isoformat(),
                "test_start": syn.event_time(25 * 24).isoformat(),
                "label_cutoff": syn.event_time(syn.DAYS * 24 + 48).isoformat(),
            },
        },
        "training": {
            "model": {"kind": "shared_bottom", "hidden": [64, 32], "embedding_dim": 8},
            "losses": {t: {"kind": "weighted", "pos_weight": w} for t, w in POS_WEIGHT.items()},
            "epochs": config.epochs,
            "batch_size": 1024,
            "learning_rate": 0.003,
            "seed": config.seed,
            "torch_threads": 1,  # several threads may reorder float reductions, and so change the weights
        },
    }


def run_demo(out: Path, config: DemoConfig) -> DemoResult:
    """Write `out/demo_data/`, `out/model_store/demo_ranker/1/` and `out/policies/home/` (see the module)."""
    from app.offline.calibration import FitConfig, PredictionFile, fit_predictions
    from app.offline.synthetic.log_file import log_table, write_log_table
    from app.offline.training.bundle import export_run
    from app.offline.training.predict import predict_run
    from app.offline.training.train import train_run
    from app.serving.golden import write_golden
    from app.serving.model_runner import ModelRunner

    created = syn.event_time(syn.DAYS * 24)
    data_dir = out / "demo_data"
    log = syn.generate_log(config.rows, config.seed)
    log_path = write_log_table(data_dir / "log.parquet", log_table(log))
    spec_path = data_dir / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(demo_spec(config), sort_keys=False), encoding="utf-8")
    run_dir = data_dir / "run"
    train_run(spec_path, log_path, run_dir, memory="memory", show_progress=config.show_progress)
    bundle_dir = out / "model_store" / MODEL_NAME / MODEL_VERSION
    export_run(run_dir, bundle_dir, calibration_version=CALIBRATION_VERSION, overwrite=True, created_at=created)
    manifest = load_manifest(bundle_dir)
    predictions = predict_run(run_dir, log_path, data_dir / "predictions.parquet", splits=("valid", "test")).path

    fitted = fit_predictions(
        PredictionFile(predictions), FitConfig(method="platt", segments=tuple(syn.SEGMENTS), shrinkage_prior=30.0),
        version=CALIBRATION_VERSION, manifest=manifest, holdout_split="test", show_progress=config.show_progress,
        created_at=created, min_held_out_positives=0,  # any --rows runs; the report shows how noisy that is
    )
    calibration_path = bundle_dir / "calibration" / f"{CALIBRATION_VERSION}.json"
    check_calibration_for(fitted.calibration, manifest, calibration_path)
    _write_json(calibration_path, fitted.calibration.model_dump(mode="json"))

    holdout = log.period(25, syn.DAYS)
    sample = _sample_request(holdout, config.sample_candidates)
    _write_json(bundle_dir / "sample_request.json", sample)
    # The golden batch: the exported model's logits for the sample request, checked at every load.
    write_golden(bundle_dir, manifest, ModelRunner(bundle_dir / "model.onnx", manifest), sample)

    policy_path = out / "policies" / SURFACE / f"{POLICY_VERSION}.yaml"
    policy_path.parent.mkdir(parents=True, exist_ok=True)
    policy_path.write_text(yaml.safe_dump(demo_policy(), sort_keys=False), encoding="utf-8")
    (policy_path.parent / "active").write_text(f"{POLICY_VERSION}\n", encoding="utf-8")
    v2 = policy_path.with_name(f"{POLICY_V2}.yaml")  # ranking capabilities, not active (`app.offline.demo_ranking`)
    v2.write_text(policy_text(demo_policy_v2(demo_policy())), encoding="utf-8")
    logs_path = _write_logs(data_dir / "logs.parquet", bundle_dir, manifest, fitted.calibration, holdout) \
        if config.logs else None
    return DemoResult(bundle_dir, policy_path, predictions, spec_path, run_dir, manifest, fitted.calibration,
                      logs_path)


def _write_logs(
    path: Path, bundle_dir: Path, manifest: ModelManifest, calibration: CalibrationFile, holdout: syn.DemoLog
) -> Path:
    """Held-out candidate sets with the bundle's calibrated predictions, scored as the service scores."""
    from app.offline.tuning.demo_logs import demo_log_columns, write_log
    from app.serving.calibration import CalibrationSet
    from app.serving.columns import CandidateColumns, Column
    from app.serving.features import FeatureEncoder
    from app.serving.model_runner import ModelRunner

    columns: dict[str, Column] = {name: holdout.numeric[:, j].astype(np.float64) for j, name in enumerate(syn.NUMERIC)}
    columns.update({name: holdout.categorical[name].tolist() for name in syn.CATEGORICAL})
    encoded = FeatureEncoder(manifest.features).encode(CandidateColumns(len(holdout), columns), {})
    logits = ModelRunner(bundle_dir / "model.onnx", manifest).run(encoded.numeric, encoded.categorical)
    calibrated = CalibrationSet(calibration, manifest).apply(logits.astype(np.float64), encoded.categorical)
    return write_log(path, demo_log_columns(holdout, calibrated))


def print_summary(console: Console, result: DemoResult) -> None:
    """The held-out calibration table and where everything was written."""
    from rich.table import Table

    table = Table(title=f"{result.manifest.name}/{result.manifest.version} on the held-out days 25-28")
    features = [s.feature for s in next(iter(result.calibration.tasks.values())).segments]
    for column in ("task", "positives", "AUC", "ratio raw", "ratio calibrated", "logloss raw", "logloss calibrated",
                   *(f"Field-RCE {f} raw → cal." for f in features)):
        table.add_column(column)
    for task, cal in result.calibration.tasks.items():
        before, after = cal.metrics.before, cal.metrics.after
        table.add_row(
            task, f"{before['positives']:.0f}", f"{before['auc']:.3f}", f"{before['calibration_ratio']:.3f}",
            f"{after['calibration_ratio']:.3f}", f"{before['logloss']:.5f}", f"{after['logloss']:.5f}",
            *(f"{before[f'field_rce.{f}']:.3f} → {after[f'field_rce.{f}']:.3f}" for f in features),
        )
    console.print(table)
    if result.manifest.parity is not None:
        console.print(f"parity torch vs onnxruntime: max |diff| = {result.manifest.parity.max_abs_diff:.2e}")
    console.print(f"spec: {result.spec_path}\nrun: {result.run_dir}\nbundle: {result.bundle_dir}\n"
                  f"policy: {result.policy_path}\nheld-out predictions: {result.predictions_path}")
    if result.logs_path:
        console.print(f"logged candidate sets for tune/simulate: {result.logs_path}")


def _sample_request(holdout: syn.DemoLog, size: int) -> dict[str, Any]:
    """A /v1/score body from held-out rows; three candidates are made ineligible on purpose. `is_new` marks
    items younger than a day, as the demo logs do (version 2's freshness minimum reads it)."""
    from app.offline.tuning.demo_logs import NEW_ITEM_HOURS

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
                "is_new": features["item_age_hours"] < NEW_ITEM_HOURS,  # the age as sent
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


def _write_json(path: Path, data: Any) -> None:
    """As `calibrate fit` writes its file (an undefined metric, e.g. AUC without positives, stays NaN)."""
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
