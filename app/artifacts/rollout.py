"""The declared rollout state of one surface: `policies/<surface>/rollout.yaml`, what the whole fleet serves.

One small YAML file per surface is the single source of truth for what every replica serves: the
active (model, calibration, policy) triple, an optional canary triple with its share, sticky key and
hash salt, an optional shadow model and shadow policy, and a `generation` that every write bumps by
one (compare-and-swap: a writer names the generation it read). `previous` keeps the last active
triples, newest last: a rollback writes the last of them back as the active triple. `changed_by`,
`reason` and `changed_at` say who made the change and why (the audit log has every change).

The admin API writes the file (`app.control.declared`); every replica's watcher applies it.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import Field, StringConstraints

from app.artifacts.common import FiniteFloat, Identifier, StrictModel
from app.artifacts.loading import parse_artifact, read_yaml

__all__ = [
    "MAX_PREVIOUS",
    "ROLLOUT_FILE",
    "RolloutCanary",
    "RolloutShadowModel",
    "RolloutState",
    "RolloutTriple",
    "dump_rollout",
    "load_rollout",
]

ROLLOUT_FILE = "rollout.yaml"
MAX_PREVIOUS = 10  # active triples remembered for rollback

# A dotted request field, e.g. `context.user_id` (see `app.serving.routing.key_value`).
StickyKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$", max_length=128)]


class RolloutTriple(StrictModel):
    """A (model, calibration, policy) triple, every part named."""

    model: Identifier
    model_version: Identifier
    calibration_version: Identifier
    policy_version: Identifier

    def text(self) -> str:
        """`model demo_ranker/1, calibration 2, policy 3`: as the audit log writes a triple."""
        return f"model {self.model}/{self.model_version}, calibration {self.calibration_version}, " \
               f"policy {self.policy_version}"


class RolloutCanary(StrictModel):
    """A candidate triple served to `share` of the unpinned requests, sticky by `sticky_key`.

    salt: mixed into the arm hash with the surface and the key value; set to the generation that
    started the canary and kept while only its share changes, so raising the share only moves users
    from stable to canary.
    """

    triple: RolloutTriple
    share: FiniteFloat = Field(gt=0, lt=1)
    sticky_key: StickyKey = "context.user_id"
    salt: int = Field(default=0, ge=0)


class RolloutShadowModel(StrictModel):
    """A triple scoring `fraction` of the requests off the response path (compared, never answered)."""

    triple: RolloutTriple
    fraction: FiniteFloat = Field(gt=0, le=1)


class RolloutState(StrictModel):
    """Everything one surface serves across the fleet (see the module docstring)."""

    schema_version: Literal[1] = 1
    surface: Identifier
    generation: int = Field(ge=0)
    active: RolloutTriple
    canary: RolloutCanary | None = None
    shadow_model: RolloutShadowModel | None = None
    shadow_policy: Identifier | None = None
    previous: list[RolloutTriple] = Field(default_factory=list, max_length=MAX_PREVIOUS)
    changed_by: Annotated[str, StringConstraints(max_length=128)] = ""
    reason: Annotated[str, StringConstraints(max_length=512)] = ""
    changed_at: datetime | None = None


def load_rollout(path: Path) -> RolloutState:
    """Read and validate a rollout file (bounded like every YAML artifact); failures are `ArtifactError`s."""
    return parse_artifact(RolloutState, read_yaml(path), path)


def dump_rollout(state: RolloutState) -> str:
    """The YAML text of a rollout state (keys in schema order)."""
    data = state.model_dump(mode="json")
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
