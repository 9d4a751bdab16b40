"""Turn a joined log and a replayed target policy into the [G, K] arrays the slate estimators read.

The log is the joined log of `fusionrank logs join` (or any candidate log with the same columns): one row
per scored candidate with `position` (served 0-based position, empty when removed), `propensity` (the
logging policy's probability of the candidate at its position given the ones above it, logged by the
service when the policy explores, 1 when it ranks deterministically), calibrated `p_<task>` and observed
`label_<task>` (empty = not observed yet). The target policy is replayed on the same rows with the
service's own composition (`app.offline.tuning.replay`), which serves one deterministic slate per request.

A metric is a task (the reward is its label, the direct method its calibrated prediction) or `utility`
(the reward is the target policy's utility computed on the labels instead of the predictions: realised
utility; the direct method is its utility on the predictions). Overrides are not applied to either.
A request whose logged top k holds an unobserved label of the metric is left out (counted): an outcome
that has not arrived is not a zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.offline.ope.estimators import SlateFeedback
from app.offline.tuning.logs import CandidateLog, LogError
from app.offline.tuning.replay import PolicyReplay, compile_for_log, log_attributes
from app.serving.utility import compose_utility

__all__ = ["POSITION", "PROPENSITY", "UTILITY", "LoggedSlates", "logged_slates", "metric_feedback"]

POSITION = "position"
PROPENSITY = "propensity"
UTILITY = "utility"
Float = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]


@dataclass(frozen=True)
class LoggedSlates:
    """What the logging policy served: flat rows at each of the first k positions, and their propensities."""

    rows: IntArray  # [G, K] flat row served at position l, -1 past the end of the slate
    propensity: Float  # [G, K] logged propensity, 1 past the end


def logged_slates(log: CandidateLog, k: int) -> LoggedSlates:
    """Read `position` and `propensity`; refuses a log that cannot be evaluated, naming the column."""
    for column in (POSITION, PROPENSITY):
        if column not in log.columns:
            raise LogError(log.path, column, "is missing: off-policy evaluation needs the served position and the"
                           " logging propensity of every served candidate",
                           "evaluate a joined log of the service's served log (`fusionrank logs join`)")
    position = _floats(log, POSITION)
    propensity = _floats(log, PROPENSITY)
    served = np.isfinite(position)
    if ((position[served] < 0) | (position[served] != np.round(position[served]))).any():
        raise LogError(log.path, POSITION, "holds a value that is not a 0-based position",
                       "write the served 0-based position, empty for removed candidates")
    bad = served & ~((propensity > 0) & (propensity <= 1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise LogError(log.path, PROPENSITY, f"served row {i} has propensity {propensity[i]!r}, not in (0, 1]",
                       "log the policy's probability of every served candidate (1 for a deterministic ranking)")
    group_of_row = np.repeat(np.arange(log.n_groups), log.sizes)
    rows = np.full((log.n_groups, k), -1, dtype=np.intp)
    props = np.ones((log.n_groups, k))
    inside = served & (np.nan_to_num(position, nan=k) < k)
    flat = np.flatnonzero(inside)
    at = position[flat].astype(np.intp)
    taken = np.zeros((log.n_groups, k), dtype=np.intp)
    np.add.at(taken, (group_of_row[flat], at), 1)
    if (taken > 1).any():
        g = int(np.argwhere(taken > 1)[0][0])
        raise LogError(log.path, POSITION, f"request {log.group_ids[g]!r} has two candidates at one position",
                       "log each served position once per request")
    rows[group_of_row[flat], at] = flat
    props[group_of_row[flat], at] = propensity[flat]
    ends = (rows >= 0).sum(axis=1)
    if ((rows >= 0) != (np.arange(k) < ends[:, None])).any():
        raise LogError(log.path, POSITION, "a request's served positions have a gap",
                       "log every served candidate of a request (positions 0, 1, 2, ... without holes)")
    return LoggedSlates(rows, props)


def metric_feedback(
    log: CandidateLog, slates: LoggedSlates, replay: PolicyReplay, metric: str, k: int
) -> tuple[SlateFeedback, IntArray]:
    """(the estimators' arrays for `metric`, the group positions they cover: requests whose logged top k has
    every label observed)."""
    reward_flat, estimate_flat = _metric_columns(log, replay, metric)
    rows = slates.rows
    logged = rows >= 0
    safe = np.where(logged, rows, 0)
    reward = np.where(logged, reward_flat[safe], 0.0)
    observed = ~np.isnan(reward).any(axis=1)
    target_rows = np.full_like(rows, -1)
    width = min(k, replay.served.shape[1])
    target_rows[:, :width] = replay.served[:, :width]
    target = (logged & (rows == target_rows)).astype(np.float64)
    estimate = np.where(logged, estimate_flat[safe], 0.0)
    served_by_target = target_rows >= 0
    target_only = np.where(served_by_target, estimate_flat[np.where(served_by_target, target_rows, 0)], 0.0)
    keep = np.flatnonzero(observed)
    data = SlateFeedback(
        reward=reward[keep], logging=slates.propensity[keep], target=target[keep], estimate=estimate[keep],
        target_estimate=target_only[keep], target_only_estimate=target_only[keep],
    )
    return data, keep


def _metric_columns(log: CandidateLog, replay: PolicyReplay, metric: str) -> tuple[Float, Float]:
    """(flat reward with NaN where unobserved, flat direct-method estimate) of a task or of `utility`."""
    predictions = log.predictions[log.mask]  # [R, T]
    labels = log.labels[log.mask]
    if metric != UTILITY:
        t = log.task_index(metric, field="--ope-metric")
        return labels[:, t], predictions[:, t]
    compiled = compile_for_log(replay.policy, log, replay.label)
    attributes = log_attributes(log, replay.policy.attributes)
    weights = np.array([term.weight for term in replay.policy.utility])
    segments = log.starts if compiled.formed else None  # `ranking.normalize` is within each request
    _, estimate = compose_utility(predictions, attributes, compiled, weights, segments=segments)
    read = np.isnan(labels[:, compiled.term_tasks]).any(axis=1)  # a term's label is not observed
    _, realised = compose_utility(np.nan_to_num(labels), attributes, compiled, weights, segments=segments)
    return np.where(read, np.nan, realised), estimate


def _floats(log: CandidateLog, name: str) -> Float:
    values = log.columns[name]
    if values.dtype.kind in "iufb":
        return values.astype(np.float64)
    try:
        return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        raise LogError(log.path, name, "is not numeric", "write numbers (empty where not served)") from None
