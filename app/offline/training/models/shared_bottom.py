"""Shared-bottom multi-task ranker: one MLP trunk on the shared input layer, one linear head per task.

Its forward takes exactly the ONNX contract's inputs (raw numeric float32 [B, N], categorical
indices int64 [B, C] with 0 = out of vocabulary) and returns logits [B, T].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from app.offline.training.models.inputs import FeatureInput

__all__ = ["MultiTaskRanker", "mlp"]


def mlp(width: int, hidden: Sequence[int]) -> tuple[nn.Sequential, int]:
    """Linear + ReLU layers; returns the stack and its output width."""
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    return nn.Sequential(*layers), width


class MultiTaskRanker(nn.Module):
    """Shared-bottom multi-task model; one linear head per task on a shared MLP trunk."""

    def __init__(
        self,
        *,
        numeric_mean: npt.NDArray[np.float64] | Sequence[float],
        numeric_std: npt.NDArray[np.float64] | Sequence[float],
        vocabulary_sizes: Sequence[int],
        n_tasks: int,
        hidden: Sequence[int] = (64, 32),
        embedding_dim: int = 8,
        log_numeric: Sequence[bool] | None = None,
    ) -> None:
        super().__init__()
        self.inputs = FeatureInput(
            numeric_mean=numeric_mean, numeric_std=numeric_std, vocabulary_sizes=vocabulary_sizes,
            embedding_dim=embedding_dim, log_numeric=log_numeric,
        )
        self.trunk, width = mlp(self.inputs.width, hidden)
        self.heads = nn.Linear(width, n_tasks)  # one row of weights per task

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.heads(self.trunk(self.inputs(numeric, categorical)))
        return logits
