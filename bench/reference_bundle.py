"""The issue's reference shape as a servable bundle: 48 numeric + 4 categorical features, 256-128 trunk, 5 heads.

The performance targets (#11) were stated for a 1000-candidate request of 48 numeric + 4 categorical
named features per candidate, a 256-128 trunk MLP with 5 heads, Platt per task, a weighted utility
and a guardrail. The demo bundle is much smaller (8 + 4 features, 64-32 trunk, 4 heads: ort.run is
~0.13 ms at 1000 candidates), so the benchmarks can also run on this bundle, built here in a few
seconds: the demo bundle's layout, names and policy (`demo_ranker/1`, surface `home`, so the peers
read it unchanged), with

- features: the demo's 4 categorical features (same vocabularies) and 48 numeric `f00`..`f47`
  (default 0.0), every one sent per candidate;
- model: `MultiTaskRanker(hidden=(256, 128))`, 5 tasks (the demo's 4 and `like`), seeded random
  weights with head biases set to the demo's base rates (the weights do not change the cost);
  exported by the same `export_onnx` the product uses, parity-checked;
- calibration: the demo's Platt parameters per task (`like` copies `click`'s);
- sample request: the demo sample's ids, attributes and categorical values, with 48 random numeric
  features per candidate; golden logits recorded as `fusionrank export` does.
Needs torch (the `train`, `dev` or `bench` extra).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.artifacts.common import sha256_file
from app.artifacts.manifest import ModelManifest
from app.offline.training.models.shared_bottom import MultiTaskRanker
from app.offline.training.onnx_export import export_onnx, parity_max_abs_diff
from app.serving.golden import write_golden
from app.serving.model_runner import ModelRunner

__all__ = ["NUMERIC", "build_reference_store"]

NUMERIC = [f"f{i:02d}" for i in range(48)]
HIDDEN = (256, 128)
EXTRA_TASK = "like"
# Head biases: the demo's base rates in logit space, so the policy's guardrail keeps most candidates.
BIASES = {"click": -2.5, "purchase": -5.0, "hide": -4.0, "report": -8.0, EXTRA_TASK: -3.0}
SEED = 11


def build_reference_store(demo_store: Path, demo_policies: Path, folder: Path) -> tuple[Path, Path]:
    """Copies of the demo store and policies at `folder`, the bundle replaced by the reference shape."""
    store, policies = folder / "model_store", folder / "policies"
    shutil.copytree(demo_store, store)
    shutil.copytree(demo_policies, policies)
    bundle = store / "demo_ranker" / "1"
    manifest = json.loads((bundle / "manifest.json").read_text())
    categorical = manifest["features"]["categorical"]
    tasks = [t["name"] for t in manifest["tasks"]] + [EXTRA_TASK]
    manifest["tasks"].append(
        {"name": EXTRA_TASK, "polarity": "positive", "description": "", "label_window_hours": 24.0}
    )
    manifest["features"]["numeric"] = [{"name": name, "default": 0.0} for name in NUMERIC]
    manifest["metrics"][EXTRA_TASK] = manifest["metrics"]["click"]

    torch.manual_seed(SEED)
    model = MultiTaskRanker(
        numeric_mean=np.zeros(len(NUMERIC)), numeric_std=np.ones(len(NUMERIC)),
        vocabulary_sizes=[len(f["vocabulary"]) for f in categorical], n_tasks=len(tasks), hidden=HIDDEN,
    )
    with torch.no_grad():
        model.heads.weight.mul_(0.5)
        model.heads.bias.copy_(torch.tensor([BIASES[t] for t in tasks]))
    rng = np.random.default_rng(SEED)
    numeric = rng.normal(size=(1000, len(NUMERIC))).astype(np.float32)
    codes = np.stack([rng.integers(0, len(f["vocabulary"]) + 1, 1000) for f in categorical], axis=1)
    model_path = bundle / "model.onnx"
    export_onnx(model, model_path, numeric, codes.astype(np.int64))
    manifest["parity"]["max_abs_diff"] = parity_max_abs_diff(model, model_path, numeric, codes.astype(np.int64))
    manifest["model_sha256"] = sha256_file(model_path)
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2))

    path = bundle / "calibration" / "1.json"
    calibration = json.loads(path.read_text())
    calibration["model"]["sha256"] = manifest["model_sha256"]
    calibration["tasks"][EXTRA_TASK] = calibration["tasks"]["click"]
    path.write_text(json.dumps(calibration, indent=2))

    sample = _sample_request(json.loads((bundle / "sample_request.json").read_text()), categorical, rng)
    (bundle / "sample_request.json").write_text(json.dumps(sample, indent=1))
    parsed = ModelManifest.model_validate(manifest)
    write_golden(bundle, parsed, ModelRunner(model_path, parsed), sample)
    return store, policies


def _sample_request(
    demo: dict[str, Any], categorical: list[dict[str, Any]], rng: np.random.Generator
) -> dict[str, Any]:
    """The demo sample with every feature on every candidate: 48 numbers and the 4 categories."""
    context = demo["context"]["features"]
    for candidate in demo["candidates"]:
        features = {name: round(float(rng.normal()), 4) for name in NUMERIC}
        for feature in categorical:
            name = feature["name"]
            features[name] = candidate["features"].get(name, context.get(name))
        candidate["features"] = features
    demo["context"]["features"] = {}
    return demo
