"""Per-task training losses with label masks, sample weights and a loss option per task.

For task t with element losses l_rt, mask m_rt (1 = observed and mature) and sample weights w_r:
L_t = sum_r w_r m_rt l_rt / sum_r w_r m_rt. A row with m_rt = 0 adds nothing to L_t nor to its
gradient, whatever its label says. Options, with p = sigmoid(z) and p_t = p if y = 1 else 1 - p:
- ``bce``:      l = -log p_t;
- ``focal``:    l = -a_t (1 - p_t)^gamma log p_t, a_t = alpha if y = 1 else 1 - alpha (no a_t when
                alpha is None), so gamma = 0 without alpha is exactly BCE (Lin et al. 2017);
- ``weighted``: l = -(pos_weight * y log p + (1 - y) log(1 - p)), class-weighted BCE.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from app.offline.training.spec import LossSpec

__all__ = ["TaskLoss", "element_losses", "focal_loss", "masked_task_losses"]


@dataclass(frozen=True)
class TaskLoss:
    """A resolved loss option (pos_weight is a number here, "balanced" was computed from counts)."""

    kind: str = "bce"
    gamma: float = 0.0
    alpha: float | None = None
    pos_weight: float = 1.0

    @classmethod
    def resolve(cls, spec: LossSpec, positives: int, observed: int) -> TaskLoss:
        """`positives`/`observed`: train-split counts, used by pos_weight "balanced" (= N- / N+)."""
        weight = spec.pos_weight
        if weight == "balanced":
            weight = (observed - positives) / positives if positives > 0 else 1.0
        return cls(kind=spec.kind, gamma=spec.gamma, alpha=spec.alpha, pos_weight=float(weight))


def focal_loss(logits: torch.Tensor, labels: torch.Tensor, gamma: float, alpha: float | None) -> torch.Tensor:
    """Element-wise focal loss, same shape as logits."""
    bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")  # -log p_t
    loss = bce if gamma == 0 else (1.0 - torch.exp(-bce)) ** gamma * bce
    if alpha is not None:
        loss = (alpha * labels + (1.0 - alpha) * (1.0 - labels)) * loss
    return loss


def element_losses(logits: torch.Tensor, labels: torch.Tensor, options: Sequence[TaskLoss]) -> torch.Tensor:
    """[B, T] element losses, column t with option t."""
    columns = []
    for t, option in enumerate(options):
        z, y = logits[:, t], labels[:, t]
        if option.kind == "focal":
            columns.append(focal_loss(z, y, option.gamma, option.alpha))
        elif option.kind == "weighted":
            weight = torch.tensor(option.pos_weight, dtype=z.dtype)
            columns.append(F.binary_cross_entropy_with_logits(z, y, reduction="none", pos_weight=weight))
        else:
            columns.append(F.binary_cross_entropy_with_logits(z, y, reduction="none"))
    return torch.stack(columns, dim=1)


def masked_task_losses(
    logits: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    options: Sequence[TaskLoss],
) -> torch.Tensor:
    """Per-task weighted mean loss over observed rows. logits/labels/mask: [B, T], weight: [B] -> [T].

    A task with no observed row in the batch contributes 0 (not NaN).
    """
    losses = element_losses(logits, labels, options)
    w = mask * weight[:, None]
    # where(), not a product: a masked row's loss never reaches the sum, even if it were not finite.
    total = torch.where(w > 0, losses * w, torch.zeros_like(losses)).sum(dim=0)
    return total / w.sum(dim=0).clamp(min=1e-12)
