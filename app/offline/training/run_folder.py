"""A training run folder: what `fusionrank train` writes and `fusionrank export` reads.

Layout of RUN/:
- ``run.json``: the spec, the fitted encoding (vocabularies, normalisation, split times, counts),
  the resolved loss options, the history (losses, lambdas, constraints per epoch), the best epoch,
  held-out metrics and the code version;
- ``model.pt``: the selected weights' state dict (loaded with ``weights_only=True``: no pickle of code);
  when tasks selected different epochs (``task_epochs`` in run.json), a `PerTaskSnapshots` of one
  network per distinct epoch; a `kind: gbt` run has ``gbt/`` instead (LightGBM text models,
  `app.offline.training.gbt.ranker`);
- ``checkpoints/epoch_NNN.pt``: model, optimiser, dual variables, history and best epoch after each
  epoch (what `--resume` needs);
- ``heldout.npz``: up to 1000 encoded test rows (parity check at export);
- ``predictions_valid.npz`` / ``predictions_test.npz``: logits, labels, masks (calibration at export);
- ``sample_rows.json``: raw feature values of a few test rows (the bundle's sample request);
- ``report.json`` / ``report.md``: the evaluation report.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from app import __version__
from app.errors import ArtifactError
from app.offline.training.encoding import FittedEncoding
from app.offline.training.models.mmoe import MMoERanker
from app.offline.training.models.ple import PLERanker
from app.offline.training.models.shared_bottom import MultiTaskRanker
from app.offline.training.models.snapshots import PerTaskSnapshots
from app.offline.training.spec import TrainSpec

__all__ = ["RunFolder", "build_model", "code_version", "write_json"]


def build_model(spec: TrainSpec, fitted: FittedEncoding) -> nn.Module:
    """The spec's architecture with the fitted normalisation and vocabulary sizes (seed torch first)."""
    dataset, model = spec.dataset, spec.training.model
    common: dict[str, Any] = {
        "numeric_mean": fitted.numeric_mean,
        "numeric_std": fitted.numeric_std,
        "vocabulary_sizes": [len(fitted.vocabularies[n]) for n in dataset.categorical],
        "n_tasks": len(dataset.tasks),
        "embedding_dim": model.embedding_dim,
        "log_numeric": [f.log for f in dataset.numeric],
    }
    if model.kind == "ple":
        return PLERanker(
            levels=model.levels,
            shared_experts=model.experts,
            task_experts=model.task_experts,
            expert_hidden=model.expert_hidden,
            tower_hidden=model.tower_hidden,
            **common,
        )
    if model.kind == "mmoe":
        return MMoERanker(
            experts=model.experts, expert_hidden=model.expert_hidden, tower_hidden=model.tower_hidden, **common
        )
    return MultiTaskRanker(hidden=model.hidden, **common)


def code_version() -> str:
    """`fusionrank <version>`, plus the git commit (and `-dirty`) when run from a checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(  # noqa: S603
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],  # noqa: S607
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(  # noqa: S603
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"fusionrank {__version__}"
    return f"fusionrank {__version__} (git {commit}{'-dirty' if dirty else ''})"


def write_json(path: Path, data: Any) -> None:
    # allow_nan=False: NaN is not JSON; callers turn undefined metrics into null first.
    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def json_safe(value: Any) -> Any:
    """NaN/inf -> None, recursively, so that the files stay valid JSON."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


@dataclass(frozen=True)
class RunFolder:
    """Paths and readers of one run folder."""

    path: Path

    @property
    def run_json(self) -> Path:
        return self.path / "run.json"

    @property
    def model(self) -> Path:
        return self.path / "model.pt"

    @property
    def gbt(self) -> Path:
        """The boosters of a `kind: gbt` run (LightGBM text models, one per task)."""
        return self.path / "gbt"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def arrays(self, name: str) -> dict[str, npt.NDArray[Any]]:
        path = self.path / f"{name}.npz"
        if not path.is_file():
            raise ArtifactError(path, "", "file missing from the run folder", "re-run `fusionrank train`")
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}

    def save_arrays(self, name: str, **arrays: npt.NDArray[Any]) -> None:
        np.savez_compressed(self.path / f"{name}.npz", **arrays)  # type: ignore[arg-type]

    def read(self) -> dict[str, Any]:
        if not self.run_json.is_file():
            raise ArtifactError(
                self.run_json,
                "",
                "not a run folder (no run.json)",
                "pass --run the folder written by `fusionrank train --out`",
            )
        data: dict[str, Any] = json.loads(self.run_json.read_text(encoding="utf-8"))
        return data

    def load(self) -> tuple[TrainSpec, FittedEncoding, nn.Module, dict[str, Any]]:
        """The spec, the encoding and the trained model (eval mode) of this run, and run.json."""
        data = self.read()
        spec = TrainSpec.model_validate(data["spec"])
        fitted = FittedEncoding.from_dict(data["encoding"])
        if spec.training.model.kind == "gbt":
            from app.offline.training.gbt.ranker import GBTRanker

            return spec, fitted, GBTRanker.load(self.gbt, spec.task_names()), data
        model = build_model(spec, fitted)
        epochs = [int(e) for e in data.get("task_epochs", {}).values()]
        distinct = sorted(set(epochs))
        if len(distinct) > 1:  # selection.combine: per_task kept one snapshot per distinct epoch
            networks = [model] + [build_model(spec, fitted) for _ in distinct[1:]]
            model = PerTaskSnapshots(networks, [distinct.index(e) for e in epochs])
        state = torch.load(self.model, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        model.eval()
        return spec, fitted, model, data
