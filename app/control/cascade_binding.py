"""Bind a policy's `cascade:` to its first-stage bundle, checked against the policy and its main model.

Called by `BundleCache.bind` after the main binding, so a policy with a cascade is loaded, golden-checked
and (by the golden batch) warmed with both bundles before any snapshot holds it. Every refusal is a
`PolicyError` naming the `cascade.*` field to fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from app.artifacts.cascade import Cascade
from app.artifacts.manifest import ModelManifest
from app.artifacts.policy import PolicyFile
from app.errors import PolicyError
from app.serving.first_stage import FirstStage
from app.serving.policy import CompiledPolicy

if TYPE_CHECKING:  # the loader imports this module
    from app.control.loader import BundleCache

__all__ = ["bind_first_stage"]


def bind_first_stage(cache: BundleCache, policy: PolicyFile, main: ModelManifest, policy_path: Path) -> FirstStage:
    """The loaded first stage of `policy` (whose `cascade` is set), running beside the main model `main`."""
    spec = policy.cascade
    if spec is None:
        raise PolicyError(policy_path, "cascade", "the policy declares no cascade", "declare `cascade:`")
    bundle = cache.named_bundle(spec.model.name, spec.model.version, policy_path, "cascade.model")
    calibration = cache.named_calibration(bundle, spec.calibration_version, policy_path, "cascade.calibration_version")
    light = bundle.manifest
    _check_features(light, main, policy_path)
    top_k = policy.slate.top_k
    if top_k is not None and spec.top_n < top_k:
        raise PolicyError(
            policy_path, "cascade.top_n", f"top_n {spec.top_n} is below slate.top_k {top_k}: the first stage"
            " would pass fewer candidates than the answer holds", f"set cascade.top_n >= {top_k}",
        )
    return FirstStage(spec, bundle, calibration, *_scoring(spec, policy, light, policy_path))


def _check_features(light: ModelManifest, main: ModelManifest, policy_path: Path) -> None:
    """The first stage must accept every request the main model accepts: its features are the main model's."""
    numeric = {f.name: f for f in main.features.numeric}
    categorical = {f.name for f in main.features.categorical}
    for feature in light.features.numeric:
        known = numeric.get(feature.name)
        if known is None:
            raise PolicyError(
                policy_path, "cascade.model", f"first-stage model {light.name}/{light.version} reads numeric feature"
                f" {feature.name!r}, which {main.name}/{main.version} does not declare, so requests need not send it",
                "train the first stage on a subset of the main model's features",
            )
        if feature.default is None and known.default is not None:
            raise PolicyError(
                policy_path, "cascade.model", f"first-stage model {light.name}/{light.version} requires numeric"
                f" feature {feature.name!r}, which the main model fills with a default when it is missing",
                "give the first stage's feature a default too",
            )
    for name in light.features.categorical_names():
        if name not in categorical:
            raise PolicyError(
                policy_path, "cascade.model", f"first-stage model {light.name}/{light.version} reads categorical"
                f" feature {name!r}, which {main.name}/{main.version} does not declare",
                "train the first stage on a subset of the main model's features",
            )


def _scoring(
    spec: Cascade, policy: PolicyFile, light: ModelManifest, policy_path: Path
) -> tuple[int, CompiledPolicy | None]:
    """(task column, None) for `cascade.task`, else (0, the policy compiled against the light model)."""
    tasks = light.task_names()
    if spec.task is not None:
        if spec.task not in tasks:
            raise PolicyError(
                policy_path, "cascade.task", f"task {spec.task!r} is not a task of first-stage model"
                f" {light.name}/{light.version}", f"name one of {tasks}",
            )
        return tasks.index(spec.task), None
    missing = sorted({t.task for t in policy.utility} - set(tasks))
    if missing:
        raise PolicyError(
            policy_path, "cascade.task", f"without `task` the first stage scores the policy's utility, but first-stage"
            f" model {light.name}/{light.version} has no task {missing}",
            f"set `cascade.task` to one of {tasks}, or use a first stage that predicts every utility task",
        )
    return 0, CompiledPolicy(policy, light)
