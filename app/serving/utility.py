"""Compose the utility of each candidate from calibrated predictions and a policy's terms, and find the
candidates whose numbers cannot be ranked (a non-finite prediction or utility)."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from app.serving.attributes import AttributeColumns
from app.serving.forms import compose_formed_utility
from app.serving.policy import CompiledPolicy

__all__ = ["NonFinite", "compose_utility", "non_finite"]

BoolArray = npt.NDArray[np.bool_]


def compose_utility(
    probabilities: npt.NDArray[np.float64],
    attributes: AttributeColumns,
    policy: CompiledPolicy,
    weights: npt.NDArray[np.float64],
    *,
    segments: npt.NDArray[np.intp] | None = None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """probabilities [B, T] -> (contributions [B, K], utility [B]).

    Term k contributes weights[k] * p[:, task_k], times the candidate's attribute for a value term
    (a missing attribute value contributes 0). utility is the sum of the contributions.
    A validated policy on a validated request cannot overflow (`app.artifacts.policy.utility_bound`);
    should a product still not be finite, no warning is raised here: `non_finite` finds the row.
    A policy whose `ranking` sets a product form or normalises a term is composed by `app.serving.forms`
    (normalisation is within each request: `segments` holds the first row of each when B spans several).
    """
    if policy.formed:
        return compose_formed_utility(probabilities, attributes, policy, weights, segments)
    with np.errstate(over="ignore", invalid="ignore"):
        contributions = probabilities[:, policy.term_tasks] * weights
        for k, name in enumerate(policy.term_attributes):
            if name is not None:
                values = np.asarray(attributes[name], dtype=np.float64)
                # missing (NaN) -> 0; as `nan_to_num(values, nan=0.0)` minus its Python overhead (an
                # infinite value would stay infinite there, not become the largest float: `non_finite` finds it)
                contributions[:, k] *= np.where(np.isnan(values), 0.0, values)
        return contributions, contributions.sum(axis=1)


class NonFinite(NamedTuple):
    """Candidates that cannot be ranked, each counted once: a calibrated prediction is NaN (the model
    emitted NaN), or else the utility is NaN or infinite."""

    prediction: BoolArray  # [B]
    utility: BoolArray  # [B], False wherever `prediction` is True

    @property
    def any_row(self) -> BoolArray:
        return np.asarray(self.prediction | self.utility)


def non_finite(
    probabilities: npt.NDArray[np.float64], utility: npt.NDArray[np.float64], unread_tasks: tuple[int, ...]
) -> NonFinite | None:
    """probabilities [B, T], utility [B], unread_tasks (columns no utility term reads) -> None when every
    number is finite (the hot path's case), else which rows are not.

    A NaN prediction of a task a term reads makes the utility NaN (NaN x w is NaN, even for w = 0 or a
    missing attribute), so the hot path costs one `isfinite` over the utility [B], plus a sum over the
    unread columns when there are any (probabilities lie in [0, 1]: a column's sum is not finite only
    when one is NaN). A NaN prediction must not pass silently: every comparison with NaN is False, so
    no guardrail on that task would ever remove the candidate.
    """
    finite_utility = np.isfinite(utility)
    if finite_utility.all() and all(math.isfinite(probabilities[:, t].sum()) for t in unread_tasks):
        return None
    prediction = np.asarray(~np.isfinite(probabilities).all(axis=1))
    return NonFinite(prediction, np.asarray(~finite_utility & ~prediction))
