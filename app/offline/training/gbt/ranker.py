"""Trained boosters as a ranker: the networks' call signature, so evaluation and parity code is shared.

`GBTRanker(numeric, categorical)` returns raw scores (logits) [B, T] as a torch tensor, like the
networks' `forward`: `evaluation.predict`, `onnx_export.predict_logits` and the parity check run on it
unchanged. Features are the ONNX contract's inputs: raw numerics [B, N] (trees need no
normalisation) followed by the categorical codes [B, C] as numbers (0 = out of vocabulary). The
boosters are saved as LightGBM's text model files, `RUN/gbt/<task index>_<task>.txt`, with the
per-task constant offsets in `RUN/gbt/offsets.json`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from app.errors import ArtifactError

__all__ = ["GBTRanker", "features"]


def features(numeric: npt.NDArray[np.float32], categorical: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
    """The boosters' input matrix [B, N + C]: numerics, then categorical codes as float32."""
    return np.hstack([numeric.astype(np.float32, copy=False), categorical.astype(np.float32)])


class GBTRanker(nn.Module):
    """One booster per task, in the spec's task order; each holds exactly its selected iterations."""

    def __init__(
        self, boosters: Sequence[lgb.Booster], tasks: Sequence[str], offsets: Sequence[float] | None = None
    ) -> None:
        super().__init__()
        if len(boosters) != len(tasks):
            raise ValueError(f"{len(boosters)} boosters for {len(tasks)} tasks")
        self.boosters = list(boosters)
        self.tasks = list(tasks)
        # A constant added to a booster's raw score: the init score of a custom-objective booster
        # (LightGBM's built-in objectives fold theirs into the first tree; 0 for those).
        self.offsets = [0.0] * len(tasks) if offsets is None else [float(v) for v in offsets]

    def raw_scores(
        self, numeric: npt.NDArray[np.float32], categorical: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float64]:
        """LightGBM's raw scores [B, T] in double precision (the parity reference)."""
        x = features(numeric, categorical)
        if not len(x):
            return np.zeros((0, len(self.boosters)))
        return np.stack(
            [
                np.asarray(b.predict(x, raw_score=True), dtype=np.float64) + offset
                for b, offset in zip(self.boosters, self.offsets, strict=True)
            ],
            axis=1,
        )

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        scores = self.raw_scores(numeric.numpy(), categorical.numpy())
        return torch.from_numpy(scores.astype(np.float32))

    def save(self, folder: Path) -> None:
        """LightGBM text models, one per task (replaces the folder's earlier models)."""
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.txt"):
            old.unlink()
        for t, (task, booster) in enumerate(zip(self.tasks, self.boosters, strict=True)):
            booster.save_model(str(folder / f"{t:02d}_{task}.txt"))
        (folder / "offsets.json").write_text(json.dumps(dict(zip(self.tasks, self.offsets, strict=True))) + "\n")

    @classmethod
    def load(cls, folder: Path, tasks: Sequence[str]) -> GBTRanker:
        boosters = []
        for t, task in enumerate(tasks):
            path = folder / f"{t:02d}_{task}.txt"
            if not path.is_file():
                raise ArtifactError(path, "", "booster file missing from the run folder", "re-run `fusionrank train`")
            boosters.append(lgb.Booster(model_file=str(path)))
        offsets_path = folder / "offsets.json"
        offsets = json.loads(offsets_path.read_text(encoding="utf-8")) if offsets_path.is_file() else {}
        return cls(boosters, tasks, [float(offsets.get(task, 0.0)) for task in tasks])
