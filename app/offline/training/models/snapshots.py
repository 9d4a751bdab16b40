"""Per-task snapshots: one network per distinct selected epoch, each task's logits from its own epoch's network.

`training.selection.combine: per_task` keeps, for each task, the weights of the epoch where that task's
selection metric was best. When tasks chose different epochs the exported model is this module: it
runs each distinct snapshot once and takes column t of task t's snapshot, so the ONNX contract is
unchanged (numeric float32 [B, N], categorical int64 [B, C] -> logits [B, T]); its cost is one
forward pass per distinct epoch (at most T).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["PerTaskSnapshots"]


class PerTaskSnapshots(nn.Module):
    """Logits [B, T] where column t comes from `networks[source[t]]` (same inputs as every ranker)."""

    def __init__(self, networks: Sequence[nn.Module], source: Sequence[int]) -> None:
        super().__init__()
        if not networks or any(not 0 <= s < len(networks) for s in source):
            raise ValueError(f"source {list(source)} must index the {len(networks)} networks")
        self.networks = nn.ModuleList(networks)
        self.source = [int(s) for s in source]

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        outputs = [network(numeric, categorical) for network in self.networks]
        return torch.stack([outputs[s][:, t] for t, s in enumerate(self.source)], dim=1)
