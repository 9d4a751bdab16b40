"""The spec's `training.model.gbt` block: LightGBM settings of the gradient-boosted family.

Kept apart from `app.offline.training.spec` (which embeds it) so that the GBT modules import their
settings without importing the network family. The constraint syntax is the networks' own
(`training.constraints`): with `kind: gbt` a constraint bounds the *primary* task's score's logloss
on the constrained task's labels, as in Moo-GBT (see `app.offline.training.gbt.moo`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.artifacts.common import FiniteFloat, Identifier, StrictModel

__all__ = ["GBTSpec"]


class GBTSpec(StrictModel):
    """One LightGBM booster per task; each stops on its own task's validation logloss."""

    rounds: int = Field(default=500, ge=1, description="boosting rounds at most, per task")
    learning_rate: FiniteFloat = Field(default=0.05, gt=0, le=1)
    # 15 leaves and 100 rows per leaf (LightGBM's own defaults: 31 and 20): chosen on *validation*
    # logloss over five tasks of two data sets (docs/training.md): 31-leaf trees overfit a rare task
    # within a few dozen rounds.
    num_leaves: int = Field(default=15, ge=2)
    max_depth: int = Field(default=-1, ge=-1, description="-1 = no limit")
    min_data_in_leaf: int = Field(default=100, ge=1)
    lambda_l2: FiniteFloat = Field(default=0.0, ge=0)
    feature_fraction: FiniteFloat = Field(default=1.0, gt=0, le=1)
    max_bin: int = Field(default=255, ge=2)
    early_stopping_rounds: int = Field(default=50, ge=1, description="rounds without a better validation loss")
    categorical: Literal["native", "codes"] = Field(
        default="native", description="native: LightGBM categorical splits; codes: vocabulary index as a number"
    )
    threads: int = Field(default=1, ge=1)
    primary: Identifier | None = Field(
        default=None, description="constrained training: the task maximised (default: the first task)"
    )
    dual_every: int = Field(default=10, ge=1, description="constrained training: rounds between dual updates")
    trees_per_ensemble: int = Field(
        default=10, ge=1, description="export: trees summed per ONNX TreeEnsemble node (partial sums in double)"
    )
