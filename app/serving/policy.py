"""A policy file compiled against its model: index arrays and weights ready for numpy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from app.artifacts.manifest import ModelManifest
from app.artifacts.policy import Guardrail, Override, PolicyFile

__all__ = ["CompiledPolicy", "EffectivePolicy"]


@dataclass(frozen=True, slots=True)
class EffectivePolicy:
    """Weights and thresholds after the overrides that match one request's context."""

    weights: npt.NDArray[np.float64]  # [K], one per utility term
    above: tuple[float | None, ...]  # per guardrail
    below: tuple[float | None, ...]
    overrides: tuple[str, ...]  # names of the overrides that matched


class CompiledPolicy:
    """Everything the hot path needs from a `PolicyFile`, resolved against the manifest."""

    def __init__(self, policy: PolicyFile, manifest: ModelManifest) -> None:
        self.file = policy
        self.version = policy.version
        tasks = manifest.task_names()
        self.term_names = [t.name for t in policy.utility]
        self.term_tasks = np.array([tasks.index(t.task) for t in policy.utility], dtype=np.intp)
        self.term_task_names = [t.task for t in policy.utility]
        self.term_attributes = [t.attribute for t in policy.utility]
        # Task columns no utility term reads: a NaN there does not show in the utility (`non_finite`).
        self.unread_tasks = tuple(sorted(set(range(len(tasks))) - set(self.term_tasks.tolist())))
        self.guardrails: tuple[Guardrail, ...] = tuple(policy.guardrails)
        self.guardrail_tasks = [None if g.task is None else tasks.index(g.task) for g in policy.guardrails]
        ranking = policy.ranking
        # The utility is not the plain weighted sum (`app.serving.forms`); False keeps the hot path as it was.
        self.formed = ranking is not None and (ranking.form != "sum" or bool(ranking.normalize))
        self._term_index = {name: k for k, name in enumerate(self.term_names)}
        self._guard_index = {g.name: i for i, g in enumerate(policy.guardrails)}
        self._base = EffectivePolicy(
            weights=np.array([t.weight for t in policy.utility], dtype=np.float64),
            above=tuple(g.above for g in policy.guardrails),
            below=tuple(g.below for g in policy.guardrails),
            overrides=(),
        )

    def resolve(self, context: Mapping[str, Any]) -> EffectivePolicy:
        """Apply, in file order, every override whose `when` matches the context attributes."""
        matched = [o for o in self.file.overrides if _matches(o, context)]
        if not matched:
            return self._base
        weights = self._base.weights.copy()
        above, below = list(self._base.above), list(self._base.below)
        for override in matched:
            for name, weight in override.weights.items():
                weights[self._term_index[name]] = weight
            for name, threshold in override.thresholds.items():
                i = self._guard_index[name]
                # A threshold override replaces the bound the guardrail uses (`above` first).
                if above[i] is not None:
                    above[i] = threshold
                else:
                    below[i] = threshold
        return EffectivePolicy(weights, tuple(above), tuple(below), tuple(o.name for o in matched))


def _matches(override: Override, context: Mapping[str, Any]) -> bool:
    return all(key in context and context[key] == value for key, value in override.when.items())
