"""Training losses. Labels carry a mask: an unobserved or immature label adds no loss at all."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["masked_bce"]


def masked_bce(
    logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, pos_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-task mean BCE over observed rows. logits, labels, mask: [B, T] -> [T].

    A task with no observed row in the batch contributes 0 (not NaN).
    """
    loss = F.binary_cross_entropy_with_logits(logits, labels, reduction="none", pos_weight=pos_weight)
    observed = mask.sum(dim=0)
    return (loss * mask).sum(dim=0) / observed.clamp(min=1.0)
