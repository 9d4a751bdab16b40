"""Schema of a model bundle's `manifest.json`: what the ONNX graph expects and what it predicts.

ONNX contract (schema_version 1): two inputs and one output, all with a dynamic batch axis B.
- ``numeric``: float32 [B, N], raw values of the numeric features in manifest order (any
  normalisation is baked into the graph);
- ``categorical``: int64 [B, C], per categorical feature the index ``1 + position`` of the value in
  its vocabulary, or ``0`` (the out-of-vocabulary index) for an unknown or missing value;
- ``logits``: float32 [B, T], one logit per task in manifest task order (logits, not probabilities).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, field_validator, model_validator

from app.artifacts.common import FiniteFloat, Identifier, StrictModel

__all__ = [
    "OOV_INDEX",
    "CategoricalFeature",
    "FeatureSchema",
    "ModelIO",
    "ModelManifest",
    "NumericFeature",
    "ParityCheck",
    "TaskSpec",
    "TrainingWindow",
]

OOV_INDEX: Literal[0] = 0


class TaskSpec(StrictModel):
    """One predicted outcome, in the order of the model's output columns."""

    name: Identifier
    # A negative task (hide, report) is one a utility may only penalise: its weight must be <= 0.
    polarity: Literal["positive", "negative"]
    description: str = ""
    # Hours after the impression before a label is mature; None = immediate.
    label_window_hours: FiniteFloat | None = Field(default=None, ge=0)


class NumericFeature(StrictModel):
    """A numeric input; `default` fills a missing value, None makes the feature required."""

    name: Identifier
    default: FiniteFloat | None = None


class CategoricalFeature(StrictModel):
    """A categorical input with its training vocabulary; unknown values map to the OOV index."""

    name: Identifier
    vocabulary: list[str] = Field(min_length=1)

    @field_validator("vocabulary")
    @classmethod
    def _unique(cls, vocabulary: list[str]) -> list[str]:
        if len(set(vocabulary)) != len(vocabulary):
            raise ValueError("vocabulary values must be unique")
        return vocabulary


class FeatureSchema(StrictModel):
    """Ordered inputs of the model: column i of `numeric` is numeric[i], and so on."""

    numeric: list[NumericFeature]
    categorical: list[CategoricalFeature]
    oov_index: Literal[0] = OOV_INDEX

    @model_validator(mode="after")
    def _unique_names(self) -> FeatureSchema:
        names = [f.name for f in self.numeric] + [f.name for f in self.categorical]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"feature names must be unique across numeric and categorical: {duplicated}")
        if not names:
            raise ValueError("a model needs at least one feature")
        return self

    def categorical_names(self) -> list[str]:
        return [f.name for f in self.categorical]


class ModelIO(StrictModel):
    """Names of the ONNX graph's inputs and output (see the module docstring)."""

    numeric_input: str = "numeric"
    categorical_input: str = "categorical"
    output: str = "logits"
    output_kind: Literal["logits"] = "logits"


class TrainingWindow(StrictModel):
    start: datetime
    end: datetime


class ParityCheck(StrictModel):
    """torch vs onnxruntime agreement measured at export."""

    max_abs_diff: FiniteFloat = Field(ge=0)
    batch_sizes: list[int]
    tolerance: FiniteFloat = Field(gt=0)


class ModelManifest(StrictModel):
    """`manifest.json` of one model version."""

    schema_version: Literal[1]
    name: Identifier
    version: Identifier
    tasks: list[TaskSpec] = Field(min_length=1)
    features: FeatureSchema
    io: ModelIO = ModelIO()
    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    training_window: TrainingWindow
    # task -> metric name -> value, measured on held-out data at training time.
    metrics: dict[str, dict[str, float]] = Field(default_factory=dict)
    parity: ParityCheck | None = None
    # Columns the model was trained with but does not read: a training-only position input whose tower
    # was dropped at export (the graph has no position input; the model ranks without position).
    training_only_inputs: list[str] | None = None
    created_at: datetime
    code_version: str

    @field_validator("tasks")
    @classmethod
    def _unique_tasks(cls, tasks: list[TaskSpec]) -> list[TaskSpec]:
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be unique: {names}")
        return tasks

    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def task(self, name: str) -> TaskSpec | None:
        return next((t for t in self.tasks if t.name == name), None)
