"""The golden batch of a model bundle: the raw logits the model gave for its `sample_request.json`.

`golden.json` is written when the bundle is exported (`fusionrank demo`, or `fusionrank models golden`
for an older bundle) and checked whenever the bundle is loaded: onnxruntime must reproduce every
logit to `tolerance` (1e-5). That catches a corrupted or swapped model.onnx that still parses, and an
operator that computes differently on another onnxruntime build. A bundle without `golden.json` loads
as before (the check is skipped and the bundle says so in `GET /admin/models`).

File: {"schema_version": 1, "request": "sample_request.json", "tolerance": 1e-5,
"onnxruntime": "<version that recorded it>", "tasks": [...], "logits": [[...], ...]}  # [B, T]
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from app.artifacts.loading import read_json
from app.artifacts.manifest import ModelManifest
from app.errors import ArtifactError
from app.serving.features import FeatureEncoder
from app.serving.model_runner import ModelRunner

__all__ = ["GOLDEN_FILE", "GOLDEN_TOLERANCE", "check_golden", "golden_logits", "write_golden"]

GOLDEN_FILE = "golden.json"
GOLDEN_TOLERANCE = 1e-5


def golden_logits(
    manifest: ModelManifest, runner: ModelRunner, encoder: FeatureEncoder, sample: Mapping[str, Any]
) -> npt.NDArray[np.float32]:
    """The model's raw logits [B, T] for a /v1/score body (features as the service encodes them)."""
    candidates = sample.get("candidates")
    if not isinstance(candidates, list) or not candidates:
        raise ValueError("the sample request has no candidates")
    features = [c.get("features", {}) if isinstance(c, dict) else {} for c in candidates]
    context = sample.get("context", {})
    context_features = context.get("features", {}) if isinstance(context, dict) else {}
    encoded = encoder.encode(features, context_features)
    return runner.run(encoded.numeric, encoded.categorical)


def write_golden(bundle_dir: Path, manifest: ModelManifest, runner: ModelRunner, sample: Mapping[str, Any]) -> Path:
    """Record the logits of `sample` as `<bundle_dir>/golden.json`."""
    logits = golden_logits(manifest, runner, FeatureEncoder(manifest.features), sample)
    record = {
        "schema_version": 1, "request": "sample_request.json", "tolerance": GOLDEN_TOLERANCE,
        "onnxruntime": ort.__version__, "tasks": manifest.task_names(),
        "logits": np.asarray(logits, dtype=np.float64).tolist(),
    }
    path = bundle_dir / GOLDEN_FILE
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return path


def check_golden(
    bundle_dir: Path, manifest: ModelManifest, runner: ModelRunner, encoder: FeatureEncoder,
    sample: Mapping[str, Any] | None,
) -> float | None:
    """Max |logit - recorded| over the golden batch; None without `golden.json`. Raises `ArtifactError`."""
    path = bundle_dir / GOLDEN_FILE
    if not path.is_file():
        return None
    record = read_json(path, what="golden batch")
    try:
        expected = np.asarray(record["logits"], dtype=np.float64)
        tolerance = float(record.get("tolerance", GOLDEN_TOLERANCE))
        tasks = list(record["tasks"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ArtifactError(path, "", f"unreadable golden batch: {exc}", "rewrite it with `fusionrank models golden`")\
            from None
    if tasks != manifest.task_names():
        raise ArtifactError(path, "tasks", f"recorded for tasks {tasks}, the manifest has {manifest.task_names()}",
                            "re-record the golden batch for this bundle")
    if sample is None:
        raise ArtifactError(path, "request", "the bundle has a golden batch but no sample_request.json",
                            "ship the sample request the golden logits were recorded for")
    try:
        actual = golden_logits(manifest, runner, encoder, sample).astype(np.float64)
    except Exception as exc:  # a sample the encoder refuses is a broken bundle, whatever the exception
        raise ArtifactError(path, "request", f"the golden batch cannot be scored: {exc}",
                            "ship a sample_request.json the model's features accept") from None
    if actual.shape != expected.shape:
        raise ArtifactError(path, "logits", f"model gives logits of shape {actual.shape}, recorded {expected.shape}",
                            "re-export the bundle")
    worst = float(np.max(np.abs(actual - expected))) if actual.size else 0.0
    if not worst <= tolerance:
        raise ArtifactError(
            path, "logits",
            f"onnxruntime {ort.__version__} reproduces the golden logits only to {worst:.3g} (tolerance {tolerance:g})",
            "a corrupted model.onnx or a different onnxruntime build; re-export or pin onnxruntime",
        )
    return worst
