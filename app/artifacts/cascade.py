"""Schema of a policy's two-stage cascade (`cascade:` in `policies/<surface>/<version>.yaml`).

A light first-stage bundle scores every candidate; the `top_n` best by the first-stage score go on
to the policy's own (heavy) model, the rest are cut (stage `cascade`, rule `first_stage_top_n`).
The first-stage score is, in this order of preference:
- ``task: <name>``: the first-stage model's calibrated prediction of that task;
- no ``task``: the policy's utility (its terms and the overrides that match the request) computed on
  the first-stage calibrated predictions, so the first stage orders as the policy would.

It lives in the policy file, so it is versioned, validated, rolled out, canaried and rolled back with
the policy (a bundle pin replaces the main model only, never the first stage).
"""

from __future__ import annotations

from pydantic import Field

from app.artifacts.bounds import MAX_SLATE_SIZE
from app.artifacts.common import Identifier, StrictModel

__all__ = ["CASCADE_RULE", "CASCADE_STAGE", "MIN_TOP_N", "Cascade", "FirstStageModel"]

CASCADE_STAGE = "cascade"  # the `stage` of the candidates the first stage cut
CASCADE_RULE = "first_stage_top_n"  # and their `rule`
MIN_TOP_N = 1


class FirstStageModel(StrictModel):
    """A model-store bundle: `model_store/<name>/<version>`."""

    name: Identifier
    version: Identifier


class Cascade(StrictModel):
    """The first stage of a policy: which bundle and calibration, how it scores, how many it passes on."""

    model: FirstStageModel
    calibration_version: Identifier
    top_n: int = Field(ge=MIN_TOP_N, le=MAX_SLATE_SIZE)
    task: Identifier | None = None  # None: the policy's utility on the first-stage predictions
