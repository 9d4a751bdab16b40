"""A policy's bound first stage (`cascade:`) and what it did to one request (`CascadeTrace`).

`FirstStage` is part of a `PolicyBinding`: the light bundle, its calibration and how its score is
read (one task's calibrated prediction, or the policy compiled against the light model's tasks), all
loaded, golden-checked and warmed with the binding, so a snapshot never holds half a cascade.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from app.artifacts.cascade import Cascade

if TYPE_CHECKING:  # bundle.py imports this module for `PolicyBinding.first_stage`
    from app.serving.bundle import ModelBundle
    from app.serving.calibration import CalibrationSet
    from app.serving.policy import CompiledPolicy

__all__ = ["CascadeTrace", "FirstStage"]


@dataclass(frozen=True, slots=True, eq=False)
class FirstStage:
    """The light bundle that pre-ranks a policy's candidates: by the policy's utility compiled against the
    light model (`policy`), or, when `policy` is None, by the calibrated prediction of task `task_index`."""

    spec: Cascade
    bundle: ModelBundle
    calibration: CalibrationSet
    task_index: int  # the light model's task column scored when `policy` is None
    policy: CompiledPolicy | None

    def versions(self) -> dict[str, str]:
        manifest = self.bundle.manifest
        return {
            "first_stage_model": manifest.name,
            "first_stage_model_version": manifest.version,
            "first_stage_calibration_version": self.calibration.version,
        }


@dataclass(frozen=True, slots=True)
class CascadeTrace:
    """One request through the first stage, in the request's candidate positions.

    scores: float64 [B] first-stage score of every candidate (None when the request had no more than
    `top_n` candidates, so the first stage did not run); passed: intp [n] positions sent to the main
    model, in request order; cut: intp [B - n] the others, best first-stage score first.
    """

    stage: FirstStage
    scores: npt.NDArray[np.float64] | None
    passed: npt.NDArray[np.intp]
    cut: npt.NDArray[np.intp]
    seconds: float

    def to_debug(self, ids: Sequence[str]) -> dict[str, object]:
        """The `cascade` block of a debug answer: versions, sizes, and every cut candidate with its score."""
        scores = self.scores
        cut = []
        if scores is not None:
            for index, value in zip(self.cut.tolist(), scores[self.cut].tolist(), strict=True):
                cut.append({"id": ids[index], "index": index,
                            "first_stage_score": value if np.isfinite(value) else None})
        return {
            **self.stage.versions(), "top_n": self.stage.spec.top_n, "task": self.stage.spec.task,
            "scored": int(self.passed.size + self.cut.size), "passed": int(self.passed.size), "cut": cut,
        }
