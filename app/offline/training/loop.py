"""The training loop: Adam on masked per-task losses, optional constraints, early stopping, checkpoints.

Objective per batch: sum_t w_t L_t (w_t: the spec's loss weights; a constrained task keeps its own
weight, set it to 0 for the pure Moo-GBT form) + the constraints' augmented-Lagrangian terms
(`app.offline.training.constraints`). After each epoch the validation split is streamed once for each
task's plain logloss (and AUC where the spec selects on it), whatever loss the task trains with.
Which epoch each task keeps and when training stops is `app.offline.training.selection`'s call
(per task by default, so a focal or weighted task never cuts the others' training short). Every
epoch writes a checkpoint (model, optimiser, dual variables, the states still selectable).
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

from app.offline.metrics import auc
from app.offline.progress import progress_bar
from app.offline.training.batches import Batch, LogSource, ShuffledBatches, blocks, count_batches, split_rows
from app.offline.training.constraints import DualState
from app.offline.training.encoding import EncodedRows
from app.offline.training.losses import TaskLoss, masked_task_losses
from app.offline.training.models.position import PositionAware
from app.offline.training.models.snapshots import PerTaskSnapshots
from app.offline.training.selection import EpochScore, Selector
from app.offline.training.spec import TrainingSpec

__all__ = ["EpochLog", "TrainOutcome", "fit", "validation_losses", "validation_scores"]


@dataclass
class EpochLog:
    """What one epoch did; `lambdas` and `constraints` are keyed by task."""

    epoch: int
    train_loss: dict[str, float]
    valid_loss: dict[str, float]
    monitor: float  # the `sum` objective of this epoch (sum_t v_t * selection metric_t)
    metric: dict[str, float]  # per task: the selection metric (logloss, or 1 - AUC)
    lambdas: dict[str, float]
    constraints: dict[str, dict[str, float]]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class TrainOutcome:
    """The history, each task's selected epoch, whether training stopped before `epochs`, the kept model."""

    history: list[EpochLog] = field(default_factory=list)
    best_epoch: int = 0  # the latest selected epoch (= the one epoch with combine: sum)
    task_epochs: dict[str, int] = field(default_factory=dict)
    stopped_early: bool = False
    infeasible: list[dict[str, Any]] = field(default_factory=list)
    model: nn.Module | None = None  # the trained network, or PerTaskSnapshots when tasks chose different epochs


@torch.no_grad()
def validation_losses(model: nn.Module, chunks: Iterable[EncodedRows], n_tasks: int) -> list[float]:
    """Masked, sample-weighted logloss per task over the given rows (plain BCE whatever the option)."""
    model.eval()
    total, weight = torch.zeros(n_tasks, dtype=torch.float64), torch.zeros(n_tasks, dtype=torch.float64)
    for chunk in blocks(chunks, 65_536):
        batch = Batch.of(chunk)
        losses = F.binary_cross_entropy_with_logits(
            _logits(model, batch), batch.labels, reduction="none"
        )
        w = batch.mask * batch.weight[:, None]
        total += torch.where(w > 0, losses * w, torch.zeros_like(losses)).sum(dim=0).double()
        weight += w.sum(dim=0).double()
    return [float(t / w) if w > 0 else float("nan") for t, w in zip(total, weight, strict=True)]


@torch.no_grad()
def validation_scores(
    model: nn.Module, chunks: Iterable[EncodedRows], n_tasks: int, auc_tasks: Sequence[int]
) -> tuple[list[float], dict[int, float]]:
    """(plain logloss per task, AUC of the tasks in `auc_tasks` on observed rows), one pass over `chunks`."""
    if not auc_tasks:
        return validation_losses(model, chunks, n_tasks), {}
    kept: list[EncodedRows] = []
    losses = validation_losses(model, _remember(chunks, kept), n_tasks)
    logits, labels, mask = [], [], []
    for chunk in blocks(kept, 65_536):
        batch = Batch.of(chunk)
        logits.append(_logits(model, batch).numpy())
        labels.append(chunk.labels)
        mask.append(chunk.mask)
    z, y, m = np.concatenate(logits), np.concatenate(labels), np.concatenate(mask)
    aucs: dict[int, float] = {}
    for t in auc_tasks:
        observed = m[:, t] > 0
        aucs[t] = auc(1.0 / (1.0 + np.exp(-z[observed, t].astype(np.float64))), y[observed, t].astype(np.float64))
    return losses, aucs


def _logits(model: nn.Module, batch: Batch) -> torch.Tensor:
    """The model's logits [B, T] on a batch; a `PositionAware` model adds its position tower's (training-only)."""
    if batch.position is not None and isinstance(model, PositionAware):
        biased: torch.Tensor = model(batch.numeric, batch.categorical, batch.position)
        return biased
    logits: torch.Tensor = model(batch.numeric, batch.categorical)
    return logits


def _remember(chunks: Iterable[EncodedRows], into: list[EncodedRows]) -> Iterable[EncodedRows]:
    for chunk in chunks:
        into.append(chunk)
        yield chunk


def fit(
    model: nn.Module,
    log: LogSource,
    *,
    tasks: Sequence[str],
    options: Sequence[TaskLoss],
    training: TrainingSpec,
    train_rows: int,
    selection_weights: Sequence[float] | None = None,
    constraint_sample: EncodedRows | None = None,
    checkpoint_dir: Path | None = None,
    show_progress: bool = True,
    resume: dict[str, Any] | None = None,
    checkpoint_extra: dict[str, Any] | None = None,
) -> TrainOutcome:
    """Train `model`; `outcome.model` is what to keep (`model` with its selected weights, or snapshots).

    `selection_weights`: per task, for `selection.combine: sum` (default: 1, 0 where the loss weight is 0).
    `resume`: a checkpoint written by this function; training continues after its epoch exactly as
    if it had not stopped (the batch order depends only on seed and epoch).
    """
    weights = torch.tensor([training.loss_weights.get(t, 1.0) for t in tasks], dtype=torch.float32)
    if selection_weights is None:
        selection_weights = [
            training.selection.weights.get(t, 1.0 if w > 0 else 0.0)
            for t, w in zip(tasks, weights.tolist(), strict=True)
        ]
    duals = DualState(training.constraints, [list(tasks).index(c.task) for c in training.constraints])
    selector = Selector(
        tasks=list(tasks),
        selection=training.selection,
        weights=list(selection_weights),
        constraints=training.constraints,
        constraint_index=duals.task_index,
        patience=training.early_stopping_patience,
    )
    auc_tasks = [t for t, task in enumerate(tasks) if training.selection.metrics.get(task, "logloss") == "auc"]
    optimiser = torch.optim.Adam(model.parameters(), lr=training.learning_rate, weight_decay=training.weight_decay)
    n_batches = count_batches(train_rows, training.batch_size)
    dual_every = max(1, n_batches // training.dual_updates_per_epoch)
    outcome = TrainOutcome()
    states: dict[int, dict[str, torch.Tensor]] = {}  # epoch -> model state, only epochs still selectable
    first_epoch = 1
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimiser.load_state_dict(resume["optimizer"])
        duals.lambdas = [float(v) for v in resume["lambdas"]]
        outcome.history = [EpochLog(**h) for h in resume["history"]]
        for h in outcome.history:
            selector.add(EpochScore(h.epoch, [h.metric[t] for t in tasks], [h.valid_loss[t] for t in tasks]))
        states = {int(e): state for e, state in resume["kept_states"].items()}
        first_epoch = int(resume["epoch"]) + 1
        if selector.should_stop() and first_epoch <= training.epochs:
            outcome.stopped_early = True
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
                    _logits(model, batch), batch.labels, batch.mask, batch.weight, options
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
            valid, aucs = validation_scores(model, split_rows(log.chunks(), "valid"), len(tasks), auc_tasks)
            metric = [1.0 - aucs[t] if t in aucs else valid[t] for t in range(len(tasks))]
            score = EpochScore(epoch, metric, valid)
            selector.add(score)
            violations = duals.violations(valid)
            record = EpochLog(
                epoch=epoch,
                train_loss=dict(zip(tasks, (running / max(seen, 1)).tolist(), strict=True)),
                valid_loss=dict(zip(tasks, valid, strict=True)),
                monitor=selector.objective(score),
                metric=dict(zip(tasks, metric, strict=True)),
                lambdas={c.task: lam for c, lam in zip(duals.constraints, duals.lambdas, strict=True)},
                constraints={
                    c.task: {"bound": c.max_loss, "valid_loss": valid[t], "violation": v}
                    for c, t, v in zip(duals.constraints, duals.task_index, violations, strict=True)
                },
                seconds=time.perf_counter() - started,
            )
            outcome.history.append(record)
            keep = selector.keep()
            if epoch in keep:
                states[epoch] = copy.deepcopy(model.state_dict())
            states = {e: state for e, state in states.items() if e in keep}
            if checkpoint_dir is not None:
                torch.save(
                    {
                        "epoch": epoch,
                        "model": model.state_dict(),
                        "optimizer": optimiser.state_dict(),
                        "lambdas": duals.lambdas,
                        "history": [e.to_dict() for e in outcome.history],
                        "kept_states": {str(e): state for e, state in states.items()},
                        **(checkpoint_extra or {}),
                    },
                    checkpoint_dir / f"epoch_{epoch:03d}.pt",
                )
            if selector.should_stop():
                # "Stopped early" only when epochs were actually left.
                outcome.stopped_early = epoch < training.epochs
                break
    outcome.task_epochs = selector.choice()
    outcome.best_epoch = max(outcome.task_epochs.values())
    outcome.infeasible = selector.infeasible()
    outcome.model = _selected_model(model, states, [outcome.task_epochs[t] for t in tasks])
    return outcome


def _selected_model(model: nn.Module, states: dict[int, dict[str, torch.Tensor]], epochs: Sequence[int]) -> nn.Module:
    """`model` with the selected epoch's weights, or one copy per distinct selected epoch (PerTaskSnapshots)."""
    distinct = sorted(set(epochs))
    if len(distinct) == 1:
        model.load_state_dict(states[distinct[0]])
        model.eval()
        return model
    networks = []
    for e in distinct:
        network = copy.deepcopy(model)
        network.load_state_dict(states[e])
        network.eval()
        networks.append(network)
    snapshots = PerTaskSnapshots(networks, [distinct.index(e) for e in epochs])
    snapshots.eval()
    return snapshots
