"""Position debiasing for the network families: a shallow position tower used in training only.

`PositionAware` wraps any ranker (same forward contract) and adds, during training, one learned logit
per (position bucket, task) to the ranker's logits: logit_t = ranker(x)_t + bias[position, t]. The
tower absorbs how much more a candidate is clicked because of where it was shown, so the ranker's
features are not credited with it (YouTube's shallow tower, RecSys 2019). With position dropout a
share of training rows sees the "unknown" bucket instead.

`neutralise` returns the ranker without the tower: what is evaluated, saved and exported (the ONNX
graph has no position input, the served model ranks as if every candidate were at the same place).
"""

from __future__ import annotations

import torch
from torch import nn

from app.offline.training.models.snapshots import PerTaskSnapshots

__all__ = ["PositionAware", "PositionTower", "neutralise"]


class PositionTower(nn.Module):
    """One logit per task for each of `buckets` positions and an "unknown" slot (index `buckets`), zero at start."""

    def __init__(self, buckets: int, n_tasks: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.unknown = buckets
        self.dropout = dropout
        self.bias = nn.Embedding(buckets + 1, n_tasks)
        nn.init.zeros_(self.bias.weight)
        # Each bias sees only its bucket's rows; scaling the output lets Adam's per-step moves (~ learning
        # rate, whatever the gradient) reach offsets of several logits within a few epochs.
        self.scale = 10.0

    def forward(self, position: torch.Tensor) -> torch.Tensor:
        """position int64 [B] -> logits [B, T]."""
        if self.training and self.dropout > 0:
            dropped = torch.rand(position.shape) < self.dropout
            position = torch.where(dropped, torch.full_like(position, self.unknown), position)
        out: torch.Tensor = self.bias(position) * self.scale
        return out

    def biases(self) -> list[list[float]]:
        """[buckets + 1][T] the learned logit offsets (the last row: unknown position)."""
        return [[float(v) * self.scale for v in row] for row in self.bias.weight.detach().tolist()]


class PositionAware(nn.Module):
    """A ranker plus a position tower whose logits are added only when a position is given."""

    def __init__(self, ranker: nn.Module, tower: PositionTower) -> None:
        super().__init__()
        self.ranker = ranker
        self.tower = tower

    def forward(
        self, numeric: torch.Tensor, categorical: torch.Tensor, position: torch.Tensor | None = None
    ) -> torch.Tensor:
        logits: torch.Tensor = self.ranker(numeric, categorical)
        return logits if position is None else logits + self.tower(position)


def neutralise(model: nn.Module) -> nn.Module:
    """`model` without its position tower (a `PositionAware`, or per-task snapshots of them); others as is."""
    if isinstance(model, PositionAware):
        return model.ranker
    if isinstance(model, PerTaskSnapshots) and any(isinstance(n, PositionAware) for n in model.networks):
        snapshots = PerTaskSnapshots([neutralise(n) for n in model.networks], model.source)
        snapshots.eval()
        return snapshots
    return model
