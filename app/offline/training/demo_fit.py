"""Train a multi-task ranker: masked per-task loss, per-task loss weights, seeded and reproducible.

Loss weights shape gradients during training only; they never appear in a policy (principle 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from app.offline.progress import progress_bar
from app.offline.training.demo_loss import masked_bce
from app.offline.training.models.shared_bottom import MultiTaskRanker

__all__ = ["TrainConfig", "TrainResult", "TrainingArrays", "fit_ranker", "predict_logits"]


@dataclass(frozen=True)
class TrainingArrays:
    numeric: npt.NDArray[np.float32]  # [R, N] raw values
    categorical: npt.NDArray[np.int64]  # [R, C] vocabulary indices, 0 = OOV
    labels: npt.NDArray[np.float32]  # [R, T]
    mask: npt.NDArray[np.float32]  # [R, T]

    def __len__(self) -> int:
        return len(self.numeric)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 3
    batch_size: int = 1024
    learning_rate: float = 3e-3
    weight_decay: float = 1e-5
    seed: int = 0
    task_loss_weights: Sequence[float] | None = None
    pos_weight: Sequence[float] | None = None  # class weighting of positives, per task
    show_progress: bool = True


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)


def fit_ranker(
    model: MultiTaskRanker, data: TrainingArrays, config: TrainConfig, task_names: Sequence[str]
) -> TrainResult:
    """Adam over shuffled mini-batches; returns per-epoch mean loss per task."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    n_tasks = data.labels.shape[1]
    weights = torch.tensor(config.task_loss_weights or [1.0] * n_tasks, dtype=torch.float32)
    pos_weight = None if config.pos_weight is None else torch.tensor(config.pos_weight, dtype=torch.float32)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    numeric = torch.from_numpy(data.numeric)
    categorical = torch.from_numpy(data.categorical)
    labels = torch.from_numpy(data.labels)
    mask = torch.from_numpy(data.mask)
    n_batches = (len(data) + config.batch_size - 1) // config.batch_size
    result = TrainResult()
    model.train()
    with progress_bar(config.show_progress) as progress:
        task_id = progress.add_task("training", total=config.epochs * n_batches)
        for epoch in range(config.epochs):
            order = torch.randperm(len(data), generator=generator)
            totals = torch.zeros(n_tasks)
            for b in range(n_batches):
                idx = order[b * config.batch_size : (b + 1) * config.batch_size]
                per_task = masked_bce(model(numeric[idx], categorical[idx]), labels[idx], mask[idx], pos_weight)
                loss = (per_task * weights).sum()
                optimiser.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                optimiser.step()
                totals += per_task.detach()
                progress.update(
                    task_id, advance=1,
                    description=f"epoch {epoch + 1}/{config.epochs} loss {loss.item():.4f}",
                )
            epoch_losses = (totals / n_batches).tolist()
            result.history.append({"epoch": float(epoch + 1), **dict(zip(task_names, epoch_losses, strict=True))})
    model.eval()
    return result


@torch.no_grad()
def predict_logits(
    model: nn.Module, numeric: npt.NDArray[np.float32], categorical: npt.NDArray[np.int64],
    batch_size: int = 65536,
) -> npt.NDArray[np.float32]:
    """Logits [R, T] in eval mode, in batches."""
    model.eval()
    out = [
        model(torch.from_numpy(numeric[i : i + batch_size]), torch.from_numpy(categorical[i : i + batch_size]))
        for i in range(0, len(numeric), batch_size)
    ]
    return torch.cat(out).numpy()
