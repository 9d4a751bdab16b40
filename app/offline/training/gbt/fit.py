"""Train the GBT family: one LightGBM booster per task, each on the rows where its label is observed.

Per task t: the train split's rows with mask_t = 1 (a row whose label is missing or immature is left
out of t's dataset, not counted as a negative), weighted by the sample weight (times `pos_weight` on
positives for a `weighted` loss option; a `focal` task trains with the focal objective of
`app.offline.training.gbt.focal`); the validation split's observed rows monitor the task's plain
logloss whatever the training loss, and training stops after `early_stopping_rounds` rounds without
a better one. The booster keeps exactly its best iteration. With `training.constraints`, the
primary task's booster is trained with Moo-GBT's constrained objective (`app.offline.training.gbt.moo`)
instead, and its round is the best primary logloss among rounds that meet every bound on validation
(else the least violating); it stops early only once a feasible round has not been bettered for
`early_stopping_rounds` rounds. The history (one entry every `dual_every` rounds) has the networks'
shape, so reports render alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from app.offline.metrics import auc
from app.offline.training.batches import LogSource, split_rows
from app.offline.training.encoding import EncodedRows, FittedEncoding
from app.offline.training.gbt.focal import FocalObjective
from app.offline.training.gbt.moo import DualTrajectory, MooObjective, logloss, sigmoid
from app.offline.training.gbt.params import GBTSpec
from app.offline.training.gbt.ranker import GBTRanker, features
from app.offline.training.loop import EpochLog, TrainOutcome
from app.offline.training.losses import TaskLoss
from app.offline.training.spec import DatasetError, TrainSpec

__all__ = ["GBTFit", "SplitArrays", "fit_gbt", "lightgbm_params"]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class SplitArrays:
    """One split in memory: booster inputs [R, F], labels and masks [R, T], sample weights [R]."""

    x: F32
    labels: F64
    mask: F64
    weight: F64

    @classmethod
    def load(cls, log: LogSource, split: str) -> SplitArrays:
        chunks = list(split_rows(log.chunks(), split))
        if not chunks:
            raise ValueError(f"no rows in the {split} split")
        rows = EncodedRows.concat(chunks)
        return cls(
            features(rows.numeric, rows.categorical),
            rows.labels.astype(np.float64),
            rows.mask.astype(np.float64),
            rows.weight.astype(np.float64),
        )

    def observed(self, t: int) -> F64:
        """Sample weight x observed mask of task t (0 = the row does not count for t)."""
        out: F64 = self.weight * (self.mask[:, t] > 0)
        return out


@dataclass(frozen=True)
class GBTFit:
    """The trained ranker, the history in the networks' shape, and the GBT part of the report."""

    model: GBTRanker
    outcome: TrainOutcome
    report: dict[str, Any]
    trajectory: DualTrajectory | None


def lightgbm_params(gbt: GBTSpec, seed: int) -> dict[str, Any]:
    """LightGBM parameters shared by every booster of a run (deterministic, quiet)."""
    return {
        "learning_rate": gbt.learning_rate,
        "num_leaves": gbt.num_leaves,
        "max_depth": gbt.max_depth,
        "min_data_in_leaf": gbt.min_data_in_leaf,
        "lambda_l2": gbt.lambda_l2,
        "feature_fraction": gbt.feature_fraction,
        "max_bin": gbt.max_bin,
        "num_threads": gbt.threads,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }


def fit_gbt(spec: TrainSpec, fitted: FittedEncoding, log: LogSource, options: Sequence[TaskLoss]) -> GBTFit:
    """Train every task's booster; see the module docstring."""
    gbt = spec.training.model.gbt
    tasks = spec.task_names()
    train, valid = SplitArrays.load(log, "train"), SplitArrays.load(log, "valid")
    n_numeric = len(spec.dataset.numeric)
    categorical = list(range(n_numeric, train.x.shape[1])) if gbt.categorical == "native" else []
    params = lightgbm_params(gbt, spec.training.seed)
    primary = gbt.primary or tasks[0]
    boosters: list[lgb.Booster] = []
    offsets = [0.0] * len(tasks)
    curves: dict[str, list[float]] = {}
    metrics: dict[str, list[float]] = {}  # per task, per round: the selection metric (logloss or 1 - AUC)
    per_task: dict[str, dict[str, Any]] = {}
    trajectory: DualTrajectory | None = None
    for t, task in enumerate(tasks):
        constrained = bool(spec.training.constraints) and task == primary
        if constrained:
            booster, offsets[t], trajectory = _fit_constrained(spec, tasks, t, train, valid, categorical, params)
            curves[task] = metrics[task] = trajectory.primary_loss
            best = int(trajectory.rounds[trajectory.select()])
            rounds = len(trajectory.rounds)
        else:
            booster, curves[task], metrics[task], offsets[t] = _fit_task(
                spec, t, train, valid, categorical, params, options[t]
            )
            best, rounds = booster.current_iteration(), len(curves[task]) or booster.current_iteration()
        boosters.append(booster)
        per_task[task] = {
            "best_iteration": best,
            "rounds_trained": rounds,
            "stopped_early": rounds < gbt.rounds,
            # the constrained primary: its best logloss among the rounds meeting the bounds
            "selection_metric": "logloss" if constrained else spec.training.selection.metrics.get(task, "logloss"),
            "train_rows": int(np.sum(train.observed(t) > 0)),
            "valid_rows": int(np.sum(valid.observed(t) > 0)),
        }
    model = GBTRanker(boosters, tasks, offsets)
    outcome = _history(spec, tasks, curves, metrics, trajectory, per_task)
    report: dict[str, Any] = {"tasks": per_task, "categorical": gbt.categorical, "primary": primary}
    if trajectory is not None:
        report["dual"] = trajectory.to_dict()
    return GBTFit(model, outcome, report, trajectory)


def _fit_task(
    spec: TrainSpec,
    t: int,
    train: SplitArrays,
    valid: SplitArrays,
    categorical: list[int],
    params: dict[str, Any],
    option: TaskLoss,
) -> tuple[lgb.Booster, list[float], list[float], float]:
    """Task t's booster on its observed rows: LightGBM's binary objective, or the focal objective for a
    focal task. It stops on, and keeps the best round of, the task's selection metric
    (`training.selection.metrics`: plain logloss by default, whatever the training loss, or AUC).
    Returns the truncated booster, its validation logloss per round, its selection metric per round
    (lower is better: logloss, or 1 - AUC) and its constant offset (the base-rate logit for a custom
    objective)."""
    gbt = spec.training.model.gbt
    task = spec.dataset.tasks[t]
    rows = train.observed(t) > 0
    y = train.labels[rows, t]
    if y.min(initial=1.0) == y.max(initial=0.0):
        raise DatasetError(
            "train split",
            f"dataset.tasks[{t}] ({task.label})",
            f"task {task.name!r} has {'no' if y.max(initial=0.0) == 0 else 'only'} positive observed training"
            f" labels ({len(y)} rows): a booster cannot learn it",
            "use more data or move dataset.split.valid_start later",
        )
    weight = train.weight[rows] * np.where(y > 0, option.pos_weight if option.kind == "weighted" else 1.0, 1.0)
    focal = option.kind == "focal"
    offset = _base_logit(y, weight) if focal else 0.0
    init = np.full(len(y), offset) if focal else None
    data = lgb.Dataset(
        train.x[rows], y, weight=None if focal else weight, init_score=init, categorical_feature=categorical,
        free_raw_data=True,
    )
    valid_rows = valid.observed(t) > 0
    v_y, v_w = valid.labels[valid_rows, t], valid.weight[valid_rows]
    evals: dict[str, Any] = {}
    callbacks: list[Any] = []
    valid_sets: list[lgb.Dataset] = []
    if valid_rows.any():
        v_init = np.full(len(v_y), offset) if focal else None
        valid_sets = [data.create_valid(valid.x[valid_rows], v_y, weight=v_w, init_score=v_init)]
        callbacks = [
            lgb.early_stopping(gbt.early_stopping_rounds, first_metric_only=True, verbose=False),
            lgb.record_evaluation(evals),
        ]
    by_auc = spec.training.selection.metrics.get(task.name, "logloss") == "auc"
    if focal:
        objective: Any = FocalObjective(y, weight, option.gamma, option.alpha)
        task_params = {**params, "objective": objective, "metric": "None"}

        def plain_metrics(preds: F64, _data: lgb.Dataset) -> list[tuple[str, float, bool]]:
            z = np.asarray(preds, dtype=np.float64)  # raw scores with a custom objective
            out = [("binary_logloss", logloss(z, v_y, v_w), False)]
            return [("auc", auc(sigmoid(z), v_y), True), *out] if by_auc else out

        feval: Any = plain_metrics if valid_sets else None
    else:
        metric = ["auc", "binary_logloss"] if by_auc else "binary_logloss"  # the first one stops training
        task_params, feval = {**params, "objective": "binary", "metric": metric}, None
    booster = lgb.train(
        task_params,
        data,
        num_boost_round=gbt.rounds,
        valid_sets=valid_sets,
        valid_names=["valid"][: len(valid_sets)],
        feval=feval,
        callbacks=callbacks,
    )
    curve = [float(v) for v in evals.get("valid", {}).get("binary_logloss", [])]
    selection = [1.0 - float(v) for v in evals.get("valid", {}).get("auc", [])] if by_auc else curve
    best = booster.best_iteration if booster.best_iteration > 0 else booster.current_iteration()
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best)), curve, selection, offset


def _base_logit(y: F64, weight: F64) -> float:
    """The weighted base rate's logit: a custom objective's starting score (its booster's offset)."""
    base = float(np.clip(np.sum(weight * y) / np.sum(weight), 1e-6, 1 - 1e-6))
    return float(np.log(base / (1 - base)))


def _fit_constrained(
    spec: TrainSpec,
    tasks: Sequence[str],
    p: int,
    train: SplitArrays,
    valid: SplitArrays,
    categorical: list[int],
    params: dict[str, Any],
) -> tuple[lgb.Booster, float, DualTrajectory]:
    """The primary task's booster under Moo-GBT's objective; returns (booster, offset, trajectory)."""
    gbt = spec.training.model.gbt
    constraints = list(spec.training.constraints)
    index = [p] + [list(tasks).index(c.task) for c in constraints]
    # Rows where the primary or a constrained task is observed; each term only counts its own rows.
    rows = np.any([train.observed(i) > 0 for i in index], axis=0)
    labels = [train.labels[rows, i] for i in index]
    weights = [train.observed(i)[rows] for i in index]
    objective = MooObjective(labels, weights, constraints)
    offset = _base_logit(labels[0], weights[0])
    data = lgb.Dataset(
        train.x[rows], labels[0], categorical_feature=categorical, init_score=np.full(int(rows.sum()), offset),
        free_raw_data=True,
    )
    v_rows = np.any([valid.observed(i) > 0 for i in index], axis=0)
    v_labels = [valid.labels[v_rows, i] for i in index]
    v_weights = [valid.observed(i)[v_rows] for i in index]
    validation = data.create_valid(valid.x[v_rows], v_labels[0], init_score=np.full(int(v_rows.sum()), offset))
    trajectory = DualTrajectory(
        tasks[p], [c.task for c in constraints], [c.max_loss for c in constraints],
        tolerance=spec.training.selection.infeasible_tolerance,
    )

    def evaluate(preds: F64, _data: lgb.Dataset) -> list[tuple[str, float, bool]]:
        z = np.asarray(preds, dtype=np.float64)
        out = [("primary_logloss", logloss(z, v_labels[0], v_weights[0]), False)]
        out += [(f"c{i}", logloss(z, v_labels[i + 1], v_weights[i + 1]), False) for i in range(len(constraints))]
        return out

    def record(env: lgb.callback.CallbackEnv) -> None:
        values = {name: value for _, name, value, *_ in env.evaluation_result_list or []}
        losses = [values[f"c{i}"] for i in range(len(constraints))]
        trajectory.record(env.iteration + 1, values["primary_logloss"], losses, objective.lambdas)
        if (env.iteration + 1) % gbt.dual_every == 0:
            objective.dual_step(losses)
        best = trajectory.select()
        # Only a feasible best round stops training: while every round violates a bound, the growing
        # multipliers are still moving the score towards it.
        stale = len(trajectory.rounds) - 1 - best
        if stale >= gbt.early_stopping_rounds and trajectory.violation(best) == 0.0:
            raise lgb.callback.EarlyStopException(best, [])

    # lgb.train catches the EarlyStopException `record` raises and returns the booster so far.
    booster = lgb.train(
        {**params, "objective": objective, "metric": "None"},
        data,
        num_boost_round=gbt.rounds,
        valid_sets=[validation],
        valid_names=["valid"],
        feval=evaluate,
        callbacks=[record],
    )
    best = int(trajectory.rounds[trajectory.select()])
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best)), offset, trajectory


def _history(
    spec: TrainSpec,
    tasks: Sequence[str],
    curves: dict[str, list[float]],
    metrics: dict[str, list[float]],
    trajectory: DualTrajectory | None,
    per_task: dict[str, dict[str, Any]],
) -> TrainOutcome:
    """Validation loss per task every `dual_every` rounds, in the networks' `EpochLog` shape."""
    gbt = spec.training.model.gbt
    weights = [spec.loss_weight(t) for t in tasks]
    longest = max((len(c) for c in curves.values()), default=0)
    history = []
    for r in sorted({*range(gbt.dual_every, longest + 1, gbt.dual_every), longest} - {0}):
        valid = {t: curves[t][r - 1] if r <= len(curves[t]) else float("nan") for t in tasks}
        lambdas: dict[str, float] = {}
        constraints: dict[str, dict[str, float]] = {}
        if trajectory is not None and r <= len(trajectory.rounds):
            for i, (task, bound) in enumerate(zip(trajectory.tasks, trajectory.bounds, strict=True)):
                loss = trajectory.losses[r - 1][i]
                lambdas[task] = trajectory.lambdas[r - 1][i]
                constraints[task] = {"bound": bound, "valid_loss": loss, "violation": max(0.0, loss - bound)}
        history.append(
            EpochLog(
                epoch=r,
                train_loss={},
                valid_loss=valid,
                monitor=float(sum(w * v for w, v in zip(weights, valid.values(), strict=True) if np.isfinite(v))),
                # each booster stops on its own selection metric (plain logloss, or 1 - AUC)
                metric={t: metrics[t][r - 1] if r <= len(metrics[t]) else float("nan") for t in tasks},
                lambdas=lambdas,
                constraints=constraints,
                seconds=0.0,
            )
        )
    best = max((int(v["best_iteration"]) for v in per_task.values()), default=0)
    return TrainOutcome(
        history=history,
        best_epoch=best,
        task_epochs={t: int(per_task[t]["best_iteration"]) for t in tasks},  # one booster per task: per-task
        stopped_early=any(v["stopped_early"] for v in per_task.values()),
        infeasible=trajectory.infeasible() if trajectory is not None else [],
    )
