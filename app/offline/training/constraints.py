"""Constrained multi-task training by the augmented Lagrangian (the idea behind Swiggy's Moo-GBT).

Problem: minimise L_primary subject to L_t <= b_t for each constrained task t, where L_t is the
task's validation loss. Primal step (every batch): minimise
    L_primary + sum_t lambda_t * L_t + sum_t mu_t / 2 * max(0, L_t - b_t)^2
on the training batch. Dual step (on validation data, `dual_updates_per_epoch` times per epoch):
    lambda_t <- max(0, lambda_t + rho_t * (L_t - b_t)).
The projection keeps lambda_t >= 0; when the constraint holds, lambda_t *decreases* by
rho_t * (b_t - L_t) instead of being reset to 0 (Moo-GBT resets it, which makes the constraint
oscillate between held and violated).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from app.offline.training.spec import ConstraintSpec

__all__ = ["DualState", "dual_update"]


def dual_update(lam: float, loss: float, bound: float, rho: float) -> float:
    """Projected dual ascent step: max(0, lambda + rho * (L - b))."""
    return max(0.0, lam + rho * (loss - bound))


@dataclass
class DualState:
    """Dual variables of the constraints, indexed like `constraints`; task indices in model order."""

    constraints: Sequence[ConstraintSpec]
    task_index: Sequence[int]
    lambdas: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.lambdas:
            self.lambdas = [0.0] * len(self.constraints)

    def penalty(self, task_losses: torch.Tensor) -> torch.Tensor:
        """sum_t lambda_t L_t + mu_t / 2 max(0, L_t - b_t)^2 on a batch's per-task losses [T]."""
        total = torch.zeros((), dtype=task_losses.dtype)
        for lam, c, t in zip(self.lambdas, self.constraints, self.task_index, strict=True):
            total = total + lam * task_losses[t]
            if c.penalty > 0:
                total = total + 0.5 * c.penalty * torch.clamp(task_losses[t] - c.max_loss, min=0.0) ** 2
        return total

    def step(self, valid_losses: Sequence[float]) -> None:
        """One dual update from per-task validation losses (model task order)."""
        self.lambdas = [
            dual_update(lam, valid_losses[t], c.max_loss, c.rho)
            for lam, c, t in zip(self.lambdas, self.constraints, self.task_index, strict=True)
        ]

    def violations(self, valid_losses: Sequence[float]) -> list[float]:
        """max(0, L_t - b_t) per constraint."""
        return [max(0.0, valid_losses[t] - c.max_loss) for c, t in zip(self.constraints, self.task_index, strict=True)]
