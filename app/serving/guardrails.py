"""Hard filters: which candidates each guardrail removes (a filter, never a penalty)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from app.serving.attributes import AttributeColumns, equals_mask, missing_mask
from app.serving.policy import CompiledPolicy, EffectivePolicy

__all__ = ["evaluate_guardrails"]


def evaluate_guardrails(
    probabilities: npt.NDArray[np.float64],
    attributes: AttributeColumns,
    policy: CompiledPolicy,
    effective: EffectivePolicy,
) -> npt.NDArray[np.bool_]:
    """-> triggered [B, G]: True where guardrail g removes candidate b.

    A missing attribute never equals a value nor lies in a set; only `required` removes it.
    """
    n = probabilities.shape[0]
    triggered = np.zeros((n, len(policy.guardrails)), dtype=np.bool_)
    for g, guard in enumerate(policy.guardrails):
        task = policy.guardrail_tasks[g]
        if task is not None:
            p = probabilities[:, task]
            above, below = effective.above[g], effective.below[g]
            hit = np.zeros(n, dtype=np.bool_)
            if above is not None:
                hit |= p > above
            if below is not None:
                hit |= p < below
            triggered[:, g] = hit
            continue
        column = attributes[guard.attribute or ""]
        if guard.required:
            triggered[:, g] = missing_mask(column)
        elif guard.in_ is not None:
            allowed = set(guard.in_)
            triggered[:, g] = np.fromiter((_hashable(v) in allowed for v in column), np.bool_, count=n)
        else:
            triggered[:, g] = equals_mask(column, guard.equals)
    return triggered


def _hashable(value: Any) -> Any:
    return value if not isinstance(value, float) or value == value else None
