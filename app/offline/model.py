"""Multi-task ranker in torch: embeddings + baked-in numeric normalisation + shared trunk + heads.

Its forward takes exactly the ONNX contract's inputs (raw numeric float32 [B, N], categorical
indices int64 [B, C] with 0 = out of vocabulary) and returns logits [B, T].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

__all__ = ["MultiTaskRanker"]


class MultiTaskRanker(nn.Module):
    """Shared-bottom multi-task model; one linear head per task on a shared MLP trunk."""

    numeric_mean: torch.Tensor
    numeric_std: torch.Tensor
    log_numeric: torch.Tensor

    def __init__(
        self,
        *,
        numeric_mean: npt.NDArray[np.float64],
        numeric_std: npt.NDArray[np.float64],
        vocabulary_sizes: Sequence[int],
        n_tasks: int,
        hidden: Sequence[int] = (64, 32),
        embedding_dim: int = 8,
        log_numeric: Sequence[bool] | None = None,
    ) -> None:
        super().__init__()
        n_numeric = len(numeric_mean)
        # Normalisation lives in the graph as buffers, so serving sends raw values.
        self.register_buffer("numeric_mean", torch.as_tensor(numeric_mean, dtype=torch.float32))
        self.register_buffer("numeric_std", torch.as_tensor(np.maximum(numeric_std, 1e-6), dtype=torch.float32))
        log_flags = [False] * n_numeric if log_numeric is None else list(log_numeric)
        self.register_buffer("log_numeric", torch.tensor(log_flags, dtype=torch.bool))
        # +1 row per table: index 0 is the out-of-vocabulary value.
        self.embeddings = nn.ModuleList(nn.Embedding(size + 1, embedding_dim) for size in vocabulary_sizes)
        layers: list[nn.Module] = []
        width = n_numeric + embedding_dim * len(vocabulary_sizes)
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        self.trunk = nn.Sequential(*layers)
        self.heads = nn.Linear(width, n_tasks)  # one row of weights per task

    def normalise(self, numeric: torch.Tensor) -> torch.Tensor:
        x = torch.where(self.log_numeric, torch.log1p(torch.clamp(numeric, min=0.0)), numeric)
        return (x - self.numeric_mean) / self.numeric_std

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        parts = [self.normalise(numeric)]
        parts += [table(categorical[:, j]) for j, table in enumerate(self.embeddings)]
        logits: torch.Tensor = self.heads(self.trunk(torch.cat(parts, dim=1)))
        return logits
