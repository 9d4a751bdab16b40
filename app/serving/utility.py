"""Compose the utility of each candidate from calibrated predictions and a policy's terms."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from app.serving.attributes import AttributeColumns
from app.serving.policy import CompiledPolicy

__all__ = ["compose_utility"]


def compose_utility(
    probabilities: npt.NDArray[np.float64],
    attributes: AttributeColumns,
    policy: CompiledPolicy,
    weights: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """probabilities [B, T] -> (contributions [B, K], utility [B]).

    Term k contributes weights[k] * p[:, task_k], times the candidate's attribute for a value term
    (a missing attribute value contributes 0). utility is the sum of the contributions.
    """
    contributions = probabilities[:, policy.term_tasks] * weights
    for k, name in enumerate(policy.term_attributes):
        if name is not None:
            values = np.asarray(attributes[name], dtype=np.float64)
            contributions[:, k] *= np.nan_to_num(values, nan=0.0)
    return contributions, contributions.sum(axis=1)
