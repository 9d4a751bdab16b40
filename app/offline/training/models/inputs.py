"""The input layer every ranker shares: baked-in numeric normalisation and categorical embeddings.

It takes the ONNX contract's inputs (raw numeric float32 [B, N]; categorical int64 [B, C] with
0 = out of vocabulary) and returns one dense vector per row [B, N + C * embedding_dim]. The
normalisation statistics are buffers, so they are exported inside the graph and serving sends raw
values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

__all__ = ["FeatureInput"]


class FeatureInput(nn.Module):
    """log1p (per flagged feature) + standardisation of numerics, embedding lookups of categoricals."""

    numeric_mean: torch.Tensor
    numeric_std: torch.Tensor
    log_numeric: torch.Tensor

    def __init__(
        self,
        *,
        numeric_mean: npt.NDArray[np.float64] | Sequence[float],
        numeric_std: npt.NDArray[np.float64] | Sequence[float],
        vocabulary_sizes: Sequence[int],
        embedding_dim: int = 8,
        log_numeric: Sequence[bool] | None = None,
    ) -> None:
        super().__init__()
        n_numeric = len(numeric_mean)
        self.register_buffer("numeric_mean", torch.as_tensor(np.asarray(numeric_mean), dtype=torch.float32))
        std = np.maximum(np.asarray(numeric_std, dtype=np.float64), 1e-6)  # a constant feature stays finite
        self.register_buffer("numeric_std", torch.as_tensor(std, dtype=torch.float32))
        log_flags = [False] * n_numeric if log_numeric is None else list(log_numeric)
        self.register_buffer("log_numeric", torch.tensor(log_flags, dtype=torch.bool))
        # +1 row per table: index 0 is the out-of-vocabulary value.
        self.embeddings = nn.ModuleList(nn.Embedding(size + 1, embedding_dim) for size in vocabulary_sizes)
        self.width = n_numeric + embedding_dim * len(vocabulary_sizes)

    def normalise(self, numeric: torch.Tensor) -> torch.Tensor:
        x = torch.where(self.log_numeric, torch.log1p(torch.clamp(numeric, min=0.0)), numeric)
        return (x - self.numeric_mean) / self.numeric_std

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        parts = [self.normalise(numeric)]
        parts += [table(categorical[:, j]) for j, table in enumerate(self.embeddings)]
        return torch.cat(parts, dim=1)
