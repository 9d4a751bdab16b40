"""Multi-gate mixture of experts (MMoE, Ma et al. 2018) on the shared input layer.

E expert MLPs see the same input; each task t has a softmax gate over the experts, computed from the
input, and a small tower on its mixture: h_t = sum_e softmax(G_t x)_e * expert_e(x), logit_t =
tower_t(h_t). Tasks that conflict can lean on different experts, which a shared bottom cannot do.
Same forward contract as `MultiTaskRanker`: (numeric [B, N], categorical [B, C]) -> logits [B, T].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from app.offline.training.models.inputs import FeatureInput
from app.offline.training.models.shared_bottom import mlp

__all__ = ["MMoERanker"]


class MMoERanker(nn.Module):
    """MMoE: `experts` shared expert MLPs, one gate and one tower per task."""

    def __init__(
        self,
        *,
        numeric_mean: npt.NDArray[np.float64] | Sequence[float],
        numeric_std: npt.NDArray[np.float64] | Sequence[float],
        vocabulary_sizes: Sequence[int],
        n_tasks: int,
        experts: int = 4,
        expert_hidden: Sequence[int] = (64,),
        tower_hidden: Sequence[int] = (16,),
        embedding_dim: int = 8,
        log_numeric: Sequence[bool] | None = None,
    ) -> None:
        super().__init__()
        self.inputs = FeatureInput(
            numeric_mean=numeric_mean,
            numeric_std=numeric_std,
            vocabulary_sizes=vocabulary_sizes,
            embedding_dim=embedding_dim,
            log_numeric=log_numeric,
        )
        width = self.inputs.width
        built = [mlp(width, expert_hidden) for _ in range(experts)]
        self.experts = nn.ModuleList(stack for stack, _ in built)
        expert_width = built[0][1]
        self.gates = nn.Linear(width, n_tasks * experts)  # all task gates in one matmul
        towers = [mlp(expert_width, tower_hidden) for _ in range(n_tasks)]
        self.towers = nn.ModuleList(stack for stack, _ in towers)
        self.heads = nn.ModuleList(nn.Linear(out, 1) for _, out in towers)
        self.n_tasks, self.n_experts = n_tasks, experts

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        x = self.inputs(numeric, categorical)
        expert_out = torch.stack([expert(x) for expert in self.experts], dim=1)  # [B, E, H]
        gates = torch.softmax(self.gates(x).reshape(-1, self.n_tasks, self.n_experts), dim=2)  # [B, T, E]
        mixed = torch.bmm(gates, expert_out)  # [B, T, H]
        logits = [head(tower(mixed[:, t])) for t, (tower, head) in enumerate(zip(self.towers, self.heads, strict=True))]
        return torch.cat(logits, dim=1)
