"""A light first-stage bundle distilled from a heavy one, for the two-stage cascade (docs/policies.md).

`build_light_bundle` copies a store bundle (manifest, calibration, sample request) under a new name,
keeps a subset of its features, and fits a small `MultiTaskRanker` (one narrow hidden layer) to the
heavy model's logits on inputs drawn around the bundle's golden batch: a cheap stand-in for a real
distilled first stage, built in a few seconds. It is exported by the product's `export_onnx`,
parity-checked, hashed, and its golden logits recorded, so the loader accepts it like any bundle;
the calibration file is the heavy bundle's (same tasks), re-pointed at the new model.
Needs torch (the `train`, `dev` or `bench` extra).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from app.artifacts.common import sha256_file
from app.artifacts.manifest import ModelManifest
from app.artifacts.policy import PolicyFile
from app.offline.training.models.shared_bottom import MultiTaskRanker
from app.offline.training.onnx_export import export_onnx, parity_max_abs_diff
from app.serving.features import FeatureEncoder
from app.serving.golden import write_golden
from app.serving.model_runner import ModelRunner

__all__ = ["build_light_bundle", "cascade_policy"]


def build_light_bundle(
    heavy: Path, light: Path, *, numeric: Sequence[str], hidden: Sequence[int] = (16,), rows: int = 4000,
    steps: int = 300, seed: int = 5,
) -> Path:
    """Write `light` (`<store>/<name>/<version>`) from the bundle at `heavy`; returns `light`.

    numeric: the heavy model's numeric features the light one reads (every categorical one is kept).
    """
    shutil.copytree(heavy, light)
    for stale in ("model.onnx", "golden.json"):
        (light / stale).unlink(missing_ok=True)
    source = ModelManifest.model_validate_json((heavy / "manifest.json").read_text())
    data = json.loads((heavy / "manifest.json").read_text())
    kept = [f for f in data["features"]["numeric"] if f["name"] in set(numeric)]
    missing = sorted(set(numeric) - {f["name"] for f in kept})
    if missing:
        raise ValueError(f"numeric features {missing} are not features of {heavy}")
    data["name"], data["version"] = light.parent.name, light.name
    data["features"]["numeric"] = kept
    sample = json.loads((heavy / "sample_request.json").read_text())

    rng = np.random.default_rng(seed)
    teacher = ModelRunner(heavy / "model.onnx", source)
    encoded = FeatureEncoder(source.features).encode(
        [c["features"] for c in sample["candidates"]], sample.get("context", {}).get("features", {})
    )
    mean, std = encoded.numeric.mean(axis=0), encoded.numeric.std(axis=0) + 1e-3
    numeric_all = (mean + std * rng.normal(size=(rows, mean.size))).astype(np.float32)
    vocabularies = [len(f.vocabulary) for f in source.features.categorical]
    codes = np.stack([rng.integers(1, v + 1, rows) for v in vocabularies], axis=1).astype(np.int64)
    target = torch.from_numpy(teacher.run(numeric_all, codes))
    columns = [i for i, f in enumerate(source.features.numeric) if f.name in set(numeric)]
    x = numeric_all[:, columns]

    torch.manual_seed(seed)
    model = MultiTaskRanker(
        numeric_mean=x.mean(axis=0), numeric_std=x.std(axis=0) + 1e-3, vocabulary_sizes=vocabularies,
        n_tasks=len(source.tasks), hidden=hidden,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    xt, ct = torch.from_numpy(x), torch.from_numpy(codes)
    for _ in range(steps):  # distil: match the heavy model's logits
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(xt, ct), target)
        loss.backward()
        optimizer.step()
    model.eval()
    model_path = light / "model.onnx"
    export_onnx(model, model_path, x[:1000], codes[:1000])
    data["parity"]["max_abs_diff"] = parity_max_abs_diff(model, model_path, x[:1000], codes[:1000])
    data["model_sha256"] = sha256_file(model_path)
    data["metrics"] = {}
    (light / "manifest.json").write_text(json.dumps(data, indent=2))
    for path in (light / "calibration").glob("*.json"):
        calibration = json.loads(path.read_text())
        calibration["model"] = {"name": data["name"], "version": data["version"], "sha256": data["model_sha256"]}
        path.write_text(json.dumps(calibration, indent=2))
    parsed = ModelManifest.model_validate(data)
    write_golden(light, parsed, ModelRunner(model_path, parsed), sample)
    return light


def cascade_policy(policy: PolicyFile, light: ModelManifest, *, top_n: int, version: str) -> PolicyFile:
    """`policy` as `version` with a first stage on `light` (its calibration "1") passing `top_n`."""
    return PolicyFile.model_validate({
        **policy.to_yaml_dict(), "version": version,
        "cascade": {"model": {"name": light.name, "version": light.version}, "calibration_version": "1",
                    "top_n": top_n},
    })
