"""The training spec: a YAML file that says what the log's columns mean and how to train on them.

One file, two sections. ``dataset`` describes the data (id columns, features, tasks with their label,
mask and maturity window, sample weights, segments, the time split); ``training`` holds everything
that shapes gradients (model, per-task loss weights and loss options, constraints, epochs). Loss
weights live here and never in a policy: a policy composes calibrated predictions, it does not train.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from app.artifacts.common import FiniteFloat, Identifier, StrictModel
from app.artifacts.loading import parse_artifact, read_yaml
from app.errors import ArtifactError
from app.offline.training.gbt.params import GBTSpec

__all__ = [
    "ConstraintSpec",
    "DatasetError",
    "DatasetSpec",
    "LossSpec",
    "ModelSpec",
    "NumericColumn",
    "PositionColumn",
    "SelectionSpec",
    "SplitSpec",
    "TaskColumn",
    "TrainSpec",
    "TrainingSpec",
    "load_spec",
]


class DatasetError(ArtifactError):
    """A data file that does not match its spec (missing column, label not 0/1, ...)."""

    code = "dataset_error"


class NumericColumn(StrictModel):
    """A numeric feature; `log` applies log1p(max(x, 0)) before the (baked-in) standardisation."""

    name: Identifier
    log: bool = False
    # Fills a null in the data and is the manifest default; None = required when serving
    # (nulls in training data are then filled with the training mean).
    default: FiniteFloat | None = None


class LossSpec(StrictModel):
    """Per-task loss option: plain BCE, focal loss, or class-weighted BCE."""

    kind: Literal["bce", "focal", "weighted"] = "bce"
    gamma: FiniteFloat = Field(default=2.0, ge=0, description="focal: down-weights easy examples")
    alpha: FiniteFloat | None = Field(default=None, gt=0, lt=1, description="focal: weight of positives")
    # weighted: weight of a positive example; "balanced" = negatives / positives in the train split.
    pos_weight: FiniteFloat | Literal["balanced"] = 1.0


class PositionColumn(StrictModel):
    """The position a candidate was shown at: a training-only input, neutralised at export.

    A shallow tower (one learned logit per task and position bucket) is added to every task's logit
    during training only, so position explains the clicks it caused instead of the features that the
    logging ranker put on top (YouTube, RecSys 2019). The exported model has no position input: it
    ranks as if every candidate were shown at the same place. `buckets`: positions 0 .. buckets-2 have
    their own logit, later ones share the last (null or negative positions: an "unknown" logit);
    `dropout`: share of training rows whose position is replaced by "unknown", so the features keep
    learning without it.
    """

    column: str
    buckets: int = Field(default=20, ge=2, le=1000)
    dropout: FiniteFloat = Field(default=0.1, ge=0, lt=1)


class TaskColumn(StrictModel):
    """One task: its label column (0/1), optional observed-mask column and maturity window."""

    name: Identifier
    label: str
    polarity: Literal["positive", "negative"] = "positive"
    description: str = ""
    mask: str | None = Field(default=None, description="1 = label observed; 0 or null = missing")
    # A row is mature when event_time + window <= the data cutoff; an immature row is masked.
    label_window_hours: FiniteFloat | None = Field(default=None, ge=0)
    threshold: FiniteFloat = Field(default=0.5, gt=0, lt=1, description="precision/recall/F1 threshold")


class SplitSpec(StrictModel):
    """How rows are split into train / valid / test (see `app.offline.training.split`).

    by: time (default): train < valid_start <= valid < test_start <= test, on the event time;
    by: column: `column` holds train / valid / test; by: files: `files` maps train / valid / test to a
    file or folder (relative to --data). Every way is group-aware: a group id in two splits is refused.
    """

    by: Literal["time", "column", "files"] = "time"
    valid_start: datetime | None = None
    test_start: datetime | None = None
    # Labels were collected up to here; default: the latest event time in the data.
    label_cutoff: datetime | None = None
    column: str | None = Field(default=None, description="by: column: the column holding train / valid / test")
    files: dict[Literal["train", "valid", "test"], str] | None = Field(
        default=None, description="by: files: split -> file or folder, relative to --data"
    )

    @model_validator(mode="after")
    def _ordered(self) -> SplitSpec:
        if self.by == "time":
            if self.valid_start is None or self.test_start is None:
                raise ValueError("dataset.split.valid_start and dataset.split.test_start are required with by: time")
            if self.valid_start >= self.test_start:
                raise ValueError("valid_start must be before test_start")
        elif self.valid_start is not None or self.test_start is not None:
            raise ValueError(f"dataset.split.valid_start / test_start only apply to by: time (this is by: {self.by})")
        if self.by == "column" and not self.column:
            raise ValueError("dataset.split.column is required with by: column (the column holding train/valid/test)")
        if self.by != "column" and self.column is not None:
            raise ValueError("dataset.split.column only applies to by: column")
        if self.by == "files" and (self.files is None or set(self.files) != {"train", "valid", "test"}):
            raise ValueError("dataset.split.files must name a file or folder for each of train, valid and test")
        if self.by != "files" and self.files is not None:
            raise ValueError("dataset.split.files only applies to by: files")
        return self


class DatasetSpec(StrictModel):
    """What the columns of a log mean."""

    format: Literal["parquet", "csv"] | None = Field(default=None, description="default: from the extension")
    group_id: str
    candidate_id: str
    # Seconds since the epoch (int/float) or an Arrow timestamp column; timezone-naive means UTC.
    event_time: str
    numeric: list[NumericColumn] = Field(default_factory=list)
    categorical: list[Identifier] = Field(default_factory=list)
    tasks: list[TaskColumn] = Field(min_length=1)
    sample_weight: str | None = None
    segments: list[str] = Field(default_factory=list, description="categorical columns to report by")
    split: SplitSpec
    position: PositionColumn | None = Field(default=None, description="a training-only position input")
    max_vocabulary: int = Field(default=10_000, ge=1, description="most frequent values kept per feature")
    min_count: int = Field(default=1, ge=1, description="rarer values map to the OOV index")

    @model_validator(mode="after")
    def _consistent(self) -> DatasetSpec:
        features = [f.name for f in self.numeric] + list(self.categorical)
        if not features:
            raise ValueError("declare at least one numeric or categorical feature")
        if len(set(features)) != len(features):
            raise ValueError(f"feature names must be unique: {features}")
        tasks = [t.name for t in self.tasks]
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"task names must be unique: {tasks}")
        if self.position is not None and self.position.column in features:
            raise ValueError(
                f"dataset.position.column {self.position.column!r} is also a feature: a position the served model"
                " reads is not neutralised; remove it from numeric/categorical"
            )
        return self

    def columns(self) -> list[str]:
        """Every column the spec reads, each once, in a stable order."""
        names = [self.group_id, self.candidate_id, self.event_time]
        names += [f.name for f in self.numeric] + list(self.categorical)
        for task in self.tasks:
            names += [task.label] + ([task.mask] if task.mask else [])
        names += ([self.sample_weight] if self.sample_weight else []) + list(self.segments)
        names += [self.split.column] if self.split.column else []
        names += [self.position.column] if self.position is not None else []
        return list(dict.fromkeys(names))


class ModelSpec(StrictModel):
    """Architecture: shared-bottom (one trunk, linear heads), MMoE (experts + per-task gates), PLE, or
    gradient-boosted trees (`gbt`: one LightGBM booster per task, settings in `gbt`)."""

    kind: Literal["shared_bottom", "mmoe", "ple", "gbt"] = "shared_bottom"
    hidden: list[int] = Field(default=[64, 32], min_length=1)
    embedding_dim: int = Field(default=8, ge=1)
    experts: int = Field(default=4, ge=1, description="mmoe: experts; ple: shared experts per level")
    task_experts: int = Field(default=1, ge=1, description="ple only: experts per task per level")
    levels: int = Field(default=1, ge=1, description="ple only: extraction levels")
    expert_hidden: list[int] = Field(default=[64], min_length=1, description="mmoe and ple")
    tower_hidden: list[int] = Field(default=[16], description="mmoe and ple; [] = linear heads")
    gbt: GBTSpec = GBTSpec()


class ConstraintSpec(StrictModel):
    """Keep a task's validation loss (masked logloss) at or below `max_loss` (augmented Lagrangian)."""

    task: Identifier
    max_loss: FiniteFloat = Field(gt=0)
    rho: FiniteFloat = Field(default=1.0, gt=0, description="dual step size")
    penalty: FiniteFloat = Field(default=0.0, ge=0, description="quadratic penalty mu/2 * max(0, L - b)^2")


class SelectionSpec(StrictModel):
    """How each task's epoch is chosen and when training stops (see `app.offline.training.selection`)."""

    # task -> metric scored on the validation split; default the task's PLAIN logloss, whatever loss it
    # trains with (a focal or weighted task is judged like the others, and never cuts their training short).
    metrics: dict[str, Literal["logloss", "auc"]] = Field(default_factory=dict)
    combine: Literal["per_task", "sum"] = Field(
        default="per_task",
        description="per_task: each task keeps its best epoch (one snapshot per task); sum: one epoch for all",
    )
    weights: dict[str, FiniteFloat] = Field(
        default_factory=dict, description="sum: task -> weight; default 1 (0 for a task with loss weight 0)"
    )
    infeasible_tolerance: FiniteFloat = Field(
        default=0.01, ge=0, description="infeasible constraints: least-violating = within this * sum of bounds"
    )


class TrainingSpec(StrictModel):
    """Everything that shapes gradients; loss weights live here, never in a policy."""

    model: ModelSpec = ModelSpec()
    loss_weights: dict[str, FiniteFloat] = Field(default_factory=dict, description="task -> weight; default 1")
    losses: dict[str, LossSpec] = Field(default_factory=dict, description="task -> loss option; default bce")
    constraints: list[ConstraintSpec] = Field(default_factory=list)
    dual_updates_per_epoch: int = Field(default=1, ge=1)
    constraint_sample_rows: int = Field(default=50_000, ge=100, description="validation rows held for dual steps")
    epochs: int = Field(default=5, ge=1)
    batch_size: int = Field(default=1024, ge=2)
    learning_rate: FiniteFloat = Field(default=3e-3, gt=0)
    weight_decay: FiniteFloat = Field(default=1e-5, ge=0)
    seed: int = 0
    shuffle_buffer: int = Field(default=100_000, ge=1, description="rows shuffled together")
    read_batch_rows: int = Field(default=65_536, ge=1, description="rows per record batch read")
    early_stopping_patience: int = Field(default=2, ge=1)
    selection: SelectionSpec = SelectionSpec()
    # Small MLPs train fastest on one intra-op thread (more threads mostly wait on each other).
    torch_threads: int = Field(default=1, ge=1)
    compare_losses: list[Literal["bce", "focal", "weighted"]] = Field(
        default_factory=list, description="also train with each option on every task, for the report"
    )


class TrainSpec(StrictModel):
    """A `fusionrank train --spec` file."""

    schema_version: Literal[1]
    name: Identifier
    dataset: DatasetSpec
    training: TrainingSpec = TrainingSpec()

    @model_validator(mode="after")
    def _known_tasks(self) -> TrainSpec:
        tasks = {t.name for t in self.dataset.tasks}
        for field, names in (
            ("training.loss_weights", self.training.loss_weights),
            ("training.losses", self.training.losses),
            ("training.selection.metrics", self.training.selection.metrics),
            ("training.selection.weights", self.training.selection.weights),
        ):
            unknown = sorted(set(names) - tasks)
            if unknown:
                raise ValueError(f"{field} names unknown task(s) {unknown}; tasks are {sorted(tasks)}")
        constrained = [c.task for c in self.training.constraints]
        unknown = sorted(set(constrained) - tasks)
        if unknown:
            raise ValueError(f"training.constraints names unknown task(s) {unknown}; tasks are {sorted(tasks)}")
        if len(set(constrained)) != len(constrained):
            raise ValueError("at most one constraint per task")
        if any(w < 0 for w in self.training.loss_weights.values()):
            raise ValueError("training.loss_weights must be >= 0")
        if any(w < 0 for w in self.training.selection.weights.values()):
            raise ValueError("training.selection.weights must be >= 0")
        if self.training.model.kind == "gbt":
            self._check_gbt(tasks)
        return self

    def _check_gbt(self, tasks: set[str]) -> None:
        training = self.training
        if training.compare_losses:
            raise ValueError("training.compare_losses is for the network families; remove it with model.kind gbt")
        if self.dataset.position is not None:
            # Trees would split on position inside every task's ensemble; fixing it to a reference value at
            # export is not removing its effect, so the GBT family refuses it rather than fake it.
            raise ValueError(
                "dataset.position: model.kind gbt cannot neutralise a position input at export (a position"
                " feature fixed to a reference value still interacts with the others in the trees); train a"
                " network family (shared_bottom, mmoe, ple) or remove dataset.position"
            )
        if training.selection.combine != "per_task":
            raise ValueError(
                "training.selection.combine: model.kind gbt trains one booster per task, each selected on its own"
                " metric; remove combine (or set it to per_task)"
            )
        primary = training.model.gbt.primary
        if primary is not None and primary not in tasks:
            raise ValueError(f"training.model.gbt.primary {primary!r} is not a task; tasks are {sorted(tasks)}")
        primary = primary or self.dataset.tasks[0].name
        if any(c.task == primary for c in training.constraints):
            raise ValueError(
                f"training.constraints: {primary!r} is the primary task of model.kind gbt; constrain other tasks"
            )
        if training.constraints and self.loss(primary).kind != "bce":
            raise ValueError(
                f"training.losses: {primary!r} is the constrained primary task of model.kind gbt and trains with"
                " Moo-GBT's logloss objective; remove its loss option"
            )

    def task_names(self) -> list[str]:
        return [t.name for t in self.dataset.tasks]

    def loss_weight(self, task: str) -> float:
        return self.training.loss_weights.get(task, 1.0)

    def selection_weight(self, task: str) -> float:
        """`sum` selection weight: the spec's, else 1 (0 for a task trained only through its constraint)."""
        default = 1.0 if self.loss_weight(task) > 0 else 0.0
        return self.training.selection.weights.get(task, default)

    def loss(self, task: str) -> LossSpec:
        return self.training.losses.get(task, LossSpec())


def load_spec(path: Path) -> TrainSpec:
    """Read and validate a spec file; errors name the file, the field and the fix."""
    return parse_artifact(TrainSpec, read_yaml(path), path, error=DatasetError)
