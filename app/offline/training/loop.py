"""The training loop: Adam on masked per-task losses, optional constraints, early stopping, checkpoints.

Objective per batch: sum_t w_t L_t (w_t: the spec's loss weights; a constrained task keeps its own
weight, set it to 0 for the pure Moo-GBT form) + the constraints' augmented-Lagrangian terms
(`app.offline.training.constraints`). After each epoch the validation split is streamed once for per-task
logloss; the monitored value is sum_t w_t * validation logloss_t. The best epoch is the one with the
lowest monitored value among epochs whose constraints hold on validation (if none holds, the one
with the smallest total violation); training stops after `early_stopping_patience` epochs without
a new best. Every epoch writes a checkpoint (model, optimiser, dual variables).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from app.offline.progress import progress_bar
from app.offline.training.batches import Batch, LogSource, ShuffledBatches, blocks, count_batches, split_rows
from app.offline.training.constraints import DualState
from app.offline.training.encoding import EncodedRows
from app.offline.training.losses import TaskLoss, masked_task_losses
from app.offline.training.spec import TrainingSpec

__all__ = ["EpochLog", "TrainOutcome", "fit", "validation_losses"]


def key_of(best: tuple[float, float] | None) -> tuple[float, float]:
    return best if best is not None else (float("inf"), float("inf"))


@dataclass
class EpochLog:
    """What one epoch did; `lambdas` and `constraints` are keyed by task."""

    epoch: int
    train_loss: dict[str, float]
    valid_loss: dict[str, float]
    monitor: float
    lambdas: dict[str, float]
    constraints: dict[str, dict[str, float]]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class TrainOutcome:
    history: list[EpochLog] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False


@torch.no_grad()
def validation_losses(model: nn.Module, chunks: Iterable[EncodedRows], n_tasks: int) -> list[float]:
    """Masked, sample-weighted logloss per task over the given rows (plain BCE whatever the option)."""
    model.eval()
    total, weight = torch.zeros(n_tasks, dtype=torch.float64), torch.zeros(n_tasks, dtype=torch.float64)
    for chunk in blocks(chunks, 65_536):
        batch = Batch.of(chunk)
        losses = F.binary_cross_entropy_with_logits(
            model(batch.numeric, batch.categorical), batch.labels, reduction="none"
        )
        w = batch.mask * batch.weight[:, None]
        total += torch.where(w > 0, losses * w, torch.zeros_like(losses)).sum(dim=0).double()
        weight += w.sum(dim=0).double()
    return [float(t / w) if w > 0 else float("nan") for t, w in zip(total, weight, strict=True)]


def fit(
    model: nn.Module,
    log: LogSource,
    *,
    tasks: Sequence[str],
    options: Sequence[TaskLoss],
    training: TrainingSpec,
    train_rows: int,
    constraint_sample: EncodedRows | None = None,
    checkpoint_dir: Path | None = None,
    show_progress: bool = True,
    resume: dict[str, Any] | None = None,
    checkpoint_extra: dict[str, Any] | None = None,
) -> TrainOutcome:
    """Train `model` in place; on return it holds the weights of the best epoch.

    `resume`: a checkpoint written by this function; training continues after its epoch exactly as
    if it had not stopped (the batch order depends only on seed and epoch).
    """
    weights = torch.tensor([training.loss_weights.get(t, 1.0) for t in tasks], dtype=torch.float32)
    duals = DualState(training.constraints, [list(tasks).index(c.task) for c in training.constraints])
    optimiser = torch.optim.Adam(model.parameters(), lr=training.learning_rate, weight_decay=training.weight_decay)
    n_batches = count_batches(train_rows, training.batch_size)
    dual_every = max(1, n_batches // training.dual_updates_per_epoch)
    outcome = TrainOutcome()
    best: tuple[float, float] | None = None  # (total violation, monitor): lexicographic
    best_state: dict[str, torch.Tensor] = copy.deepcopy(model.state_dict())
    stale = 0
    first_epoch = 1
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimiser.load_state_dict(resume["optimizer"])
        duals.lambdas = [float(v) for v in resume["lambdas"]]
        outcome.history = [EpochLog(**h) for h in resume["history"]]
        best = (float(resume["best"]["violation"]), float(resume["best"]["monitor"]))
        outcome.best_epoch, stale = int(resume["best"]["epoch"]), int(resume["best"]["stale"])
        best_state = resume["best_model"]
        first_epoch = int(resume["epoch"]) + 1
        outcome.stopped_early = stale >= training.early_stopping_patience
        if outcome.stopped_early:
            first_epoch = training.epochs + 1
    if checkpoint_dir is not None:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)

    def dual_step() -> None:
        if duals.constraints and constraint_sample is not None:
            duals.step(validation_losses(model, [constraint_sample], len(tasks)))
            model.train()

    with progress_bar(show_progress) as progress:
        bar = progress.add_task("training", total=training.epochs * n_batches, completed=(first_epoch - 1) * n_batches)
        for epoch in range(first_epoch, training.epochs + 1):
            started = time.perf_counter()
            model.train()
            running = torch.zeros(len(tasks))
            seen = 0
            batches = ShuffledBatches(
                log,
                split="train",
                batch_size=training.batch_size,
                buffer_rows=training.shuffle_buffer,
                seed=training.seed,
                epoch=epoch,
            )
            for b, batch in enumerate(batches, start=1):
                per_task = masked_task_losses(
                    model(batch.numeric, batch.categorical), batch.labels, batch.mask, batch.weight, options
                )
                loss = (per_task * weights).sum() + duals.penalty(per_task)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                optimiser.step()
                running += per_task.detach()
                seen += 1
                if b % dual_every == 0 and b < n_batches:
                    dual_step()
                shown = " ".join(f"{t} {v:.4f}" for t, v in zip(tasks, (running / seen).tolist(), strict=True))
                progress.update(
                    bar, advance=1, description=f"epoch {epoch}/{training.epochs} loss {loss.item():.4f} | {shown}"
                )
            dual_step()
            valid = validation_losses(model, split_rows(log.chunks(), "valid"), len(tasks))
            monitor = float(
                sum(w * v for w, v in zip(weights.tolist(), valid, strict=True) if w > 0 and np.isfinite(v))
            )
            violations = duals.violations(valid)
            record = EpochLog(
                epoch=epoch,
                train_loss=dict(zip(tasks, (running / max(seen, 1)).tolist(), strict=True)),
                valid_loss=dict(zip(tasks, valid, strict=True)),
                monitor=monitor,
                lambdas={c.task: lam for c, lam in zip(duals.constraints, duals.lambdas, strict=True)},
                constraints={
                    c.task: {"bound": c.max_loss, "valid_loss": valid[t], "violation": v}
                    for c, t, v in zip(duals.constraints, duals.task_index, violations, strict=True)
                },
                seconds=time.perf_counter() - started,
            )
            outcome.history.append(record)
            key = (float(sum(violations)), monitor)
            if best is None or key < best:
                best, outcome.best_epoch, stale = key, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
            if checkpoint_dir is not None:
                torch.save(
                    {
                        "epoch": epoch,
                        "model": model.state_dict(),
                        "optimizer": optimiser.state_dict(),
                        "lambdas": duals.lambdas,
                        "history": [e.to_dict() for e in outcome.history],
                        "best": {
                            "epoch": outcome.best_epoch,
                            "violation": key_of(best)[0],
                            "monitor": key_of(best)[1],
                            "stale": stale,
                        },
                        "best_model": best_state,
                        **(checkpoint_extra or {}),
                    },
                    checkpoint_dir / f"epoch_{epoch:03d}.pt",
                )
            if stale >= training.early_stopping_patience:
                outcome.stopped_early = True
                break
    model.load_state_dict(best_state)
    model.eval()
    return outcome
