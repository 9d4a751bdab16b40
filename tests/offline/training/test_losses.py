"""Masked per-task losses: masks, focal loss, class weights, sample weights."""

from __future__ import annotations

import pytest
import torch

from app.offline.training.losses import TaskLoss, element_losses, focal_loss, masked_task_losses
from app.offline.training.spec import LossSpec

OPTIONS = {
    "bce": [TaskLoss("bce")] * 3,
    "focal": [TaskLoss("focal", gamma=2.0, alpha=0.25)] * 3,
    "weighted": [TaskLoss("weighted", pos_weight=5.0)] * 3,
}


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(64, 3, generator=g)
    labels = (torch.rand(64, 3, generator=g) < 0.3).float()
    mask = (torch.rand(64, 3, generator=g) < 0.7).float()
    weight = torch.rand(64, generator=g) + 0.5
    return logits, labels, mask, weight


def _loss_and_grad(
    logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor, options: list[TaskLoss]
) -> tuple[torch.Tensor, torch.Tensor]:
    z = logits.clone().requires_grad_(True)
    per_task = masked_task_losses(z, labels, mask, weight, options)
    per_task.sum().backward()
    assert z.grad is not None
    return per_task.detach(), z.grad


@pytest.mark.parametrize("kind", sorted(OPTIONS))
def test_changing_a_masked_label_changes_neither_loss_nor_gradients(kind: str) -> None:
    logits, labels, mask, weight = _batch()
    before = _loss_and_grad(logits, labels, mask, weight, OPTIONS[kind])
    flipped = torch.where(mask == 0, 1.0 - labels, labels)  # every masked label flipped
    assert not torch.equal(flipped, labels)
    after = _loss_and_grad(logits, flipped, mask, weight, OPTIONS[kind])
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    # and the masked rows get exactly zero gradient
    assert torch.all(after[1][mask == 0] == 0)


def test_changing_an_observed_label_does_change_the_loss() -> None:
    logits, labels, mask, weight = _batch()
    row = int(torch.nonzero(mask[:, 0])[0])
    flipped = labels.clone()
    flipped[row, 0] = 1 - flipped[row, 0]
    a = masked_task_losses(logits, labels, mask, weight, OPTIONS["bce"])
    b = masked_task_losses(logits, flipped, mask, weight, OPTIONS["bce"])
    assert a[0] != b[0] and torch.equal(a[1:], b[1:])


def test_focal_loss_at_gamma_zero_without_alpha_is_bce() -> None:
    logits, labels, mask, weight = _batch(1)
    focal = masked_task_losses(logits, labels, mask, weight, [TaskLoss("focal", gamma=0.0)] * 3)
    bce = masked_task_losses(logits, labels, mask, weight, [TaskLoss("bce")] * 3)
    torch.testing.assert_close(focal, bce, rtol=0, atol=1e-7)
    # alpha = 0.5 is BCE halved
    half = masked_task_losses(logits, labels, mask, weight, [TaskLoss("focal", gamma=0.0, alpha=0.5)] * 3)
    torch.testing.assert_close(half, bce / 2)


def test_focal_loss_down_weights_easy_examples_more_than_hard_ones() -> None:
    z = torch.tensor([4.0, -1.0])  # an easy positive, a hard positive
    y = torch.ones(2)
    bce = focal_loss(z, y, 0.0, None)
    focal = focal_loss(z, y, 2.0, None)
    ratio = focal / bce
    assert ratio[0] < 0.01 < ratio[1] < 1


def test_weighted_bce_scales_positives_only() -> None:
    z = torch.tensor([[0.3], [0.3]])
    y = torch.tensor([[1.0], [0.0]])
    bce = element_losses(z, y, [TaskLoss("bce")])
    weighted = element_losses(z, y, [TaskLoss("weighted", pos_weight=3.0)])
    torch.testing.assert_close(weighted[0], 3 * bce[0])
    torch.testing.assert_close(weighted[1], bce[1])


def test_balanced_pos_weight_is_negatives_over_positives() -> None:
    option = TaskLoss.resolve(LossSpec(kind="weighted", pos_weight="balanced"), positives=10, observed=110)
    assert option.pos_weight == 10.0


def test_zero_sample_weight_and_empty_task_are_harmless() -> None:
    logits, labels, mask, weight = _batch(2)
    mask[:, 2] = 0  # no observed row for task 2
    weight[0] = 0.0
    flipped = labels.clone()
    flipped[0] = 1 - flipped[0]
    a = masked_task_losses(logits, labels, mask, weight, OPTIONS["bce"])
    b = masked_task_losses(logits, flipped, mask, weight, OPTIONS["bce"])
    assert torch.equal(a, b) and a[2] == 0 and torch.isfinite(a).all()
