"""Utility forms beyond the weighted sum: the weighted product and per-request normalisation of a term.

Used by `app.serving.utility.compose_utility` when a policy's `ranking` block sets `form: product` or
`normalize` (`app.artifacts.policy_ranking.RankingRules`); a policy without them never reaches this module.

- A normalised term's input x (p_task, or p_task x attribute for a value term) is replaced, within each request
  (`segments`: the first row of each request when several are composed at once, as `simulate` does), by its
  percentile rank in [0, 1] (ties share their mean rank; a request of one candidate gets 0.5) or by its z-score
  (x - mean) / std clipped to +/-`MAX_ZSCORE` (0 when every x is equal). A missing attribute counts as 0 first.
- Sum form: contribution = weight x x.
- Product form: a plain term contributes the log-factor weight x log(epsilon + x); a value term contributes
  weight x x. utility = exp(sum of the log-factors) x (1 + sum of the value contributions): a value term
  scales the engagement product (1 without value terms), so a candidate without a value keeps its product.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from app.artifacts.policy_ranking import MAX_ZSCORE
from app.serving.attributes import AttributeColumns
from app.serving.policy import CompiledPolicy

__all__ = ["compose_formed_utility", "normalise", "term_inputs"]

Float = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]


def term_inputs(
    probabilities: Float, attributes: AttributeColumns, policy: CompiledPolicy, segments: IntArray | None
) -> Float:
    """[B, K] each term's input after normalisation (x above)."""
    inputs = probabilities[:, policy.term_tasks].copy()
    for k, name in enumerate(policy.term_attributes):
        if name is not None:
            inputs[:, k] *= np.nan_to_num(np.asarray(attributes[name], dtype=np.float64), nan=0.0)
    ranking = policy.file.ranking
    if ranking is not None:
        for k, term in enumerate(policy.term_names):
            how = ranking.normalize.get(term)
            if how is not None:
                inputs[:, k] = normalise(inputs[:, k], how, segments)
    return inputs


def compose_formed_utility(
    probabilities: Float,
    attributes: AttributeColumns,
    policy: CompiledPolicy,
    weights: Float,
    segments: IntArray | None,
) -> tuple[Float, Float]:
    """probabilities [B, T] -> (contributions [B, K], utility [B]) under the policy's form (module docstring)."""
    ranking = policy.file.ranking
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        inputs = term_inputs(probabilities, attributes, policy, segments)
        if ranking is None or ranking.form == "sum":
            contributions = inputs * weights
            return contributions, contributions.sum(axis=1)
        value = np.array([a is not None for a in policy.term_attributes], dtype=np.bool_)
        contributions = np.where(value, inputs * weights, weights * np.log(float(ranking.epsilon or 0.0) + inputs))
        utility = np.exp(contributions[:, ~value].sum(axis=1))
        if value.any():
            utility = utility * (1.0 + contributions[:, value].sum(axis=1))
        return contributions, utility


def normalise(values: Float, how: str, segments: IntArray | None) -> Float:
    """values [B] -> rank percentile or clipped z-score within each segment (starts, sorted; None = one).

    A non-finite input (a NaN prediction) stays NaN, so `non_finite` removes that candidate alone; the others
    are normalised among the finite inputs of their request.
    """
    n = len(values)
    if n == 0:
        return values.copy()
    starts = np.zeros(1, dtype=np.intp) if segments is None else np.asarray(segments, dtype=np.intp)
    group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, n]))
    finite = np.isfinite(values)
    clean = np.where(finite, values, 0.0)
    counts = np.add.reduceat(finite.astype(np.float64), starts)  # finite inputs per segment
    if how == "zscore":
        mean = np.add.reduceat(clean, starts) / np.maximum(counts, 1.0)
        centred = np.where(finite, clean - mean[group], 0.0)
        std = np.sqrt(np.add.reduceat(centred * centred, starts) / np.maximum(counts, 1.0))
        safe = np.where(std > 0, std, 1.0)
        z = np.clip(np.where(std[group] > 0, centred / safe[group], 0.0), -MAX_ZSCORE, MAX_ZSCORE)
        return np.asarray(np.where(finite, z, np.nan))
    # rank: sort by (segment, value), non-finite last; ties share the mean of their ordinal ranks
    order = np.lexsort((np.where(finite, values, np.inf), group))
    sorted_values, sorted_group = np.where(finite, values, np.inf)[order], group[order]
    new_run = np.r_[True, (sorted_values[1:] != sorted_values[:-1]) | (sorted_group[1:] != sorted_group[:-1])]
    run = np.cumsum(new_run) - 1
    ordinal = np.arange(n) - starts[sorted_group]
    mean_rank = np.bincount(run, weights=ordinal) / np.bincount(run)
    size = counts[sorted_group]
    out = np.empty(n)
    out[order] = np.where(size > 1, mean_rank[run] / np.maximum(size - 1, 1), 0.5)
    return np.asarray(np.where(finite, out, np.nan))
