"""`fusionrank export`: a run folder -> a servable bundle `model_store/<name>/<version>/`.

Writes `model.onnx` (dynamo exporter, opset 18, one file, dynamic batch, output `logits` [B, T] in
the spec's task order), checks torch vs onnxruntime on held-out test rows at batch 1, 7 and 1000
(fails above 1e-4; fewer than 1000 test rows are repeated to fill the batch), then `manifest.json`
(feature schema, task windows, training window, test metrics, parity, the training code version),
a starter calibration `calibration/<version>.json` — global Platt scaling per task fitted on the
validation split's predictions, with before/after metrics on the test split — and a
`sample_request.json` built from raw test rows, with `golden.json` (onnxruntime's logits for it, which
the service reproduces to 1e-5 at every load). `fusionrank calibrate` (segment-aware) can
replace the starter calibration; the bundle needs one to be served.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.artifacts.calibration import (
    BeforeAfter,
    CalibrationFile,
    FittedFor,
    PlattParams,
    ReferenceDistribution,
    TaskCalibration,
)
from app.artifacts.common import sha256_file
from app.artifacts.loading import load_calibration, load_manifest
from app.artifacts.manifest import (
    ModelManifest,
    ParityCheck,
    TaskSpec,
    TrainingWindow,
)
from app.errors import ArtifactError
from app.offline.calibration import PlattCalibrator, drift_edges, reference_fractions
from app.offline.training.encoding import feature_schema
from app.offline.training.evaluation import task_metrics
from app.offline.training.gbt.onnx import PARITY_TOLERANCE as GBT_PARITY_TOLERANCE
from app.offline.training.gbt.onnx import export_gbt_onnx
from app.offline.training.gbt.ranker import GBTRanker
from app.offline.training.onnx_export import PARITY_BATCH_SIZES, PARITY_TOLERANCE, export_onnx, parity_max_abs_diff
from app.offline.training.run_folder import RunFolder, json_safe, write_json
from app.serving.calibration import sigmoid
from app.serving.golden import write_golden
from app.serving.model_runner import ModelRunner

__all__ = ["ExportResult", "export_run"]

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ExportResult:
    bundle_dir: Path
    manifest: ModelManifest
    calibration: CalibrationFile


def export_run(
    run: Path, out: Path, *, calibration_version: str = "1", overwrite: bool = False, created_at: datetime | None = None
) -> ExportResult:
    """Export RUN into OUT = model_store/<name>/<version>; name and version come from OUT's last parts.

    created_at: the manifest's timestamp (default now; the demo passes its log's end to be reproducible).
    """
    folder = RunFolder(run)
    spec, fitted, model, data = folder.load()
    name, version = out.parent.name, out.name
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ArtifactError(
            out,
            "",
            "the bundle folder exists and is not empty",
            "choose a new version (bundles are immutable) or pass --overwrite",
        )
    heldout = folder.arrays("heldout")
    numeric, categorical = heldout["numeric"].astype(np.float32), heldout["categorical"].astype(np.int64)
    if len(numeric) < max(PARITY_BATCH_SIZES):
        repeats = -(-max(PARITY_BATCH_SIZES) // len(numeric))
        numeric, categorical = np.tile(numeric, (repeats, 1)), np.tile(categorical, (repeats, 1))

    # Build in a temporary sibling and move it into place: a failed export leaves no half bundle.
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=out.parent))
    try:
        model_path = staging / "model.onnx"
        tolerance = PARITY_TOLERANCE
        if isinstance(model, GBTRanker):
            tolerance = GBT_PARITY_TOLERANCE
            gbt = spec.training.model.gbt
            export_gbt_onnx(model, model_path, numeric.shape[1], categorical.shape[1], gbt.trees_per_ensemble)
        else:
            export_onnx(model, model_path, numeric, categorical)
        parity = parity_max_abs_diff(model, model_path, numeric, categorical, tolerance=tolerance)
        dataset = spec.dataset
        metrics = {t: {k: v for k, v in m.items() if v is not None} for t, m in data["metrics"].items()}
        manifest = ModelManifest(
            schema_version=1,
            name=name,
            version=version,
            tasks=[
                TaskSpec(
                    name=t.name, polarity=t.polarity, description=t.description, label_window_hours=t.label_window_hours
                )
                for t in dataset.tasks
            ],
            features=feature_schema(dataset, fitted, training=False),
            model_sha256=sha256_file(model_path),
            training_window=TrainingWindow(start=_utc(fitted.time_min), end=_utc(fitted.valid_start)),
            metrics=metrics,
            parity=ParityCheck(max_abs_diff=parity, batch_sizes=list(PARITY_BATCH_SIZES), tolerance=tolerance),
            created_at=created_at or datetime.now(UTC).replace(microsecond=0),
            code_version=str(data["code_version"]),
            training_only_inputs=None if dataset.position is None else [dataset.position.column],
        )
        written = manifest.model_dump(mode="json")
        if manifest.training_only_inputs is None:  # manifests without one stay byte for byte as they were
            written.pop("training_only_inputs")
        write_json(staging / "manifest.json", written)
        calibration = _calibration(manifest, folder, calibration_version, [t.threshold for t in dataset.tasks])
        (staging / "calibration").mkdir()
        write_json(
            staging / "calibration" / f"{calibration_version}.json", json_safe(calibration.model_dump(mode="json"))
        )
        sample = _sample_request(folder)
        write_json(staging / "sample_request.json", sample)
        # The golden batch: this model's logits for the sample request, checked whenever the bundle loads.
        write_golden(staging, manifest, ModelRunner(model_path, manifest), sample)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
        out.chmod(0o755)  # mkdtemp made it private
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    # Read back through the service's own loaders: what we wrote is what it will accept.
    manifest = load_manifest(out)
    return ExportResult(out, manifest, load_calibration(out / "calibration" / f"{calibration_version}.json"))


def _calibration(manifest: ModelManifest, folder: RunFolder, version: str, thresholds: list[float]) -> CalibrationFile:
    valid, test = folder.arrays("predictions_valid"), folder.arrays("predictions_test")
    tasks: dict[str, TaskCalibration] = {}
    notes = []
    for t, task in enumerate(manifest.task_names()):
        fit_rows = valid["mask"][:, t] > 0
        z = valid["logits"][fit_rows, t].astype(np.float64)
        try:
            params = PlattCalibrator().fit(z, valid["labels"][fit_rows, t].astype(np.float64)).to_params()
        except ValueError as exc:  # no observed rows, or a non-positive slope
            params = PlattParams(a=1.0, b=0.0)
            notes.append(f"{task}: identity ({exc})")
        calibrated = sigmoid(params.a * z + params.b) if len(z) else np.array([0.5])
        edges = drift_edges(calibrated)
        test_rows = test["mask"][:, t] > 0
        zt, yt = test["logits"][test_rows, t].astype(np.float64), test["labels"][test_rows, t].astype(np.float64)
        tasks[task] = TaskCalibration(
            calibrator=params,
            bucket_edges=edges,
            reference=ReferenceDistribution(fractions=reference_fractions(calibrated, edges)),
            metrics=BeforeAfter(
                before=_finite(task_metrics(sigmoid(zt), yt, thresholds[t])),
                after=_finite(task_metrics(sigmoid(params.a * zt + params.b), yt, thresholds[t])),
            ),
        )
    return CalibrationFile(
        schema_version=1,
        version=version,
        model=FittedFor(name=manifest.name, version=manifest.version, sha256=manifest.model_sha256),
        created_at=manifest.created_at,
        tasks=tasks,
        notes="Starter calibration written by `fusionrank export`: global Platt scaling per task fitted on the"
        " validation split; metrics before/after on the test split." + (" " + "; ".join(notes) if notes else ""),
    )


def _sample_request(folder: RunFolder) -> dict[str, Any]:
    import json

    rows = json.loads((folder.path / "sample_rows.json").read_text(encoding="utf-8"))
    return {
        "request_id": "sample-1",
        "candidates": [
            {"id": f"{r['id']}-{i}", "features": r["features"], "attributes": {}} for i, r in enumerate(rows)
        ],
        "options": {"debug": False},
    }


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if np.isfinite(v)}


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
