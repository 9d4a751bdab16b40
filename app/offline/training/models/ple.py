"""Progressive layered extraction (PLE, Tang et al. 2020) on the shared input layer.

Each extraction level has `shared_experts` experts every task may use and `task_experts` experts
per task. Task t's gate mixes its own experts and the shared ones; between levels a shared gate
mixes all experts into the next level's shared input. Towers on the last level's task outputs give
the logits. Compared with MMoE, tasks get experts no other task writes to, which limits the
"seesaw" where one task improves at another's expense.
Same forward contract as `MultiTaskRanker`: (numeric [B, N], categorical [B, C]) -> logits [B, T].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from app.offline.training.models.inputs import FeatureInput
from app.offline.training.models.shared_bottom import mlp

__all__ = ["PLERanker"]


def _mix(gate: nn.Module, x: torch.Tensor, outputs: list[torch.Tensor]) -> torch.Tensor:
    """softmax(gate(x)) [B, E] weighted sum of E expert outputs [B, H] -> [B, H]."""
    weights = torch.softmax(gate(x), dim=1).unsqueeze(1)  # [B, 1, E]
    return torch.bmm(weights, torch.stack(outputs, dim=1)).squeeze(1)


class _Level(nn.Module):
    def __init__(self, width: int, hidden: Sequence[int], n_tasks: int, shared: int, own: int, last: bool) -> None:
        super().__init__()
        self.shared = nn.ModuleList(mlp(width, hidden)[0] for _ in range(shared))
        self.own = nn.ModuleList(nn.ModuleList(mlp(width, hidden)[0] for _ in range(own)) for _ in range(n_tasks))
        self.task_gates = nn.ModuleList(nn.Linear(width, own + shared) for _ in range(n_tasks))
        self.shared_gate = None if last else nn.Linear(width, n_tasks * own + shared)
        self.width = mlp(width, hidden)[1]

    def forward(
        self, task_inputs: list[torch.Tensor], shared_input: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        shared_out = [expert(shared_input) for expert in self.shared]
        own_out = [
            [expert(x) for expert in cast(nn.ModuleList, experts)]
            for experts, x in zip(self.own, task_inputs, strict=True)
        ]
        tasks = [
            _mix(gate, x, own + shared_out) for gate, x, own in zip(self.task_gates, task_inputs, own_out, strict=True)
        ]
        if self.shared_gate is None:
            return tasks, shared_input
        everything = [o for own in own_out for o in own] + shared_out
        return tasks, _mix(self.shared_gate, shared_input, everything)


class PLERanker(nn.Module):
    """PLE: `levels` extraction levels of shared and task-specific experts, one tower per task."""

    def __init__(
        self,
        *,
        numeric_mean: npt.NDArray[np.float64] | Sequence[float],
        numeric_std: npt.NDArray[np.float64] | Sequence[float],
        vocabulary_sizes: Sequence[int],
        n_tasks: int,
        levels: int = 1,
        shared_experts: int = 2,
        task_experts: int = 1,
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
        stack = []
        for level in range(levels):
            stack.append(_Level(width, expert_hidden, n_tasks, shared_experts, task_experts, last=level == levels - 1))
            width = stack[-1].width
        self.levels = nn.ModuleList(stack)
        towers = [mlp(width, tower_hidden) for _ in range(n_tasks)]
        self.towers = nn.ModuleList(tower for tower, _ in towers)
        self.heads = nn.ModuleList(nn.Linear(out, 1) for _, out in towers)
        self.n_tasks = n_tasks

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        x = self.inputs(numeric, categorical)
        tasks, shared = [x] * self.n_tasks, x
        for level in self.levels:
            tasks, shared = level(tasks, shared)
        logits = [head(tower(h)) for tower, head, h in zip(self.towers, self.heads, tasks, strict=True)]
        return torch.cat(logits, dim=1)
