"""What a replayed policy would have shown: per-task NDCG@k, expected outcomes, filters, mix, segments.

All figures are means over groups (requests) unless named a share:
- ``ndcg@k:<task>``: NDCG@k of the served slate; gains = the observed labels when the log has a
  label column for the task, else the calibrated predictions. Missing is not negative: candidates
  with an unobserved label are left out of both the slate and the ideal (a condensed list), and
  groups without any gain are left out; the ideal is over every judged logged candidate, so a
  candidate a guardrail removes costs NDCG;
- ``expected:<task>``: sum of p_task over the served top k (expected clicks, hides... per request);
- ``utility``: sum of the policy's own utility over the served top k;
- ``filtered:<rule>``: share of logged candidates removed by that guardrail (the first that matched)
  or slate rule;
- ``share:<attribute>=<value>``: share of served top-k slots, for every value served (string and
  boolean attributes; the report shows the MIX_LIMIT most frequent under the first variant);
- ``new_item_share``: share of served slots with is_new true; ``creator_hhi``: Herfindahl index of
  creators over all served slots (1 = one creator takes everything); ``creators_per_slate``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from app.offline.tuning.logs import CandidateLog
from app.offline.tuning.ndcg import discounts, ideal_dcg
from app.offline.tuning.objectives import observed_gains
from app.offline.tuning.replay import PolicyReplay

__all__ = ["MIX_LIMIT", "replay_outcomes", "segment_outcomes"]

Float = npt.NDArray[np.float64]
MIX_LIMIT = 8  # values per attribute shown in the report (results.json has them all)


def replay_outcomes(
    log: CandidateLog, replay: PolicyReplay, k: int, *, groups: npt.NDArray[np.intp] | None = None,
    mix: Sequence[str] = (), creator: str | None = "creator_id", new_item: str | None = "is_new",
) -> dict[str, float]:
    """Metrics of one replay over all groups, or over the group positions `groups`."""
    chosen = np.arange(log.n_groups) if groups is None else groups
    served = replay.served[chosen, :k]
    valid = served >= 0
    rows = np.where(valid, served, 0)
    out: dict[str, float] = {"groups": float(len(chosen)), "slate_size": float(valid.sum(axis=1).mean())}
    flat_p = log.predictions[log.mask]  # [R, T]
    gains = observed_gains(log, log.tasks, labels=True)
    gains_flat, judged_flat = gains.values[log.mask], gains.judged[log.mask]
    discount = discounts(served.shape[1])
    for t, task in enumerate(log.tasks):
        # condensed list: the judged candidates of the slate, in slate order
        counted = valid & judged_flat[rows, t]
        position = np.maximum(np.cumsum(counted, axis=1) - 1, 0)
        got = (gains_flat[rows, t] * counted * discount[position]).sum(axis=1)
        best = ideal_dcg(gains.values[chosen, :, t], gains.judged[chosen, :, t], k)
        defined = best > 0
        out[f"ndcg@{k}:{task}"] = float((got[defined] / best[defined]).mean()) if defined.any() else float("nan")
    for t, task in enumerate(log.tasks):
        out[f"expected:{task}"] = float(((flat_p[rows, t] * valid).sum(axis=1)).mean())
    out["utility"] = float((replay.utility[rows] * valid).sum(axis=1).mean())
    group_rows = log.row[chosen][log.mask[chosen]]
    candidates = max(len(group_rows), 1)
    for g, guard in enumerate(replay.policy.guardrails):
        out[f"filtered:{guard.name}"] = float((replay.guardrail[group_rows] == g).sum() / candidates)
    for r, rule in enumerate(replay.slate_rules):
        out[f"filtered:{rule}"] = float((replay.slate_rule[group_rows] == r).sum() / candidates)
    slots = served[valid]
    total = max(len(slots), 1)
    for name in mix:
        values = log.columns[name][slots]
        keys, counts = np.unique(np.array([str(v) for v in values.tolist()], dtype=object), return_counts=True)
        for i in np.argsort(-counts, kind="stable"):
            out[f"share:{name}={keys[i]}"] = float(counts[i] / total)
    if new_item is not None and new_item in log.columns:
        out["new_item_share"] = float(np.mean(log.columns[new_item][slots].astype(bool))) if len(slots) else 0.0
    if creator is not None and creator in log.columns:
        creators = log.columns[creator][slots].astype(str)
        _, codes, counts = np.unique(creators, return_inverse=True, return_counts=True)
        out["creator_hhi"] = float(((counts / total) ** 2).sum())
        # distinct creators per slate: count first occurrences of (group, creator)
        slate_of_slot = np.nonzero(valid)[0]
        pairs = np.unique(slate_of_slot.astype(np.int64) * (len(counts) + 1) + codes.reshape(-1))
        out["creators_per_slate"] = float(len(pairs) / max(len(chosen), 1))
    return out


def segment_outcomes(
    log: CandidateLog, replay: PolicyReplay, k: int, segment: str, metrics: Sequence[str]
) -> dict[str, dict[str, float]]:
    """value of the group-level column `segment` -> the chosen metrics over that value's groups."""
    values = log.columns[segment][log.starts]
    labels = np.array([str(v) for v in values.tolist()], dtype=object)
    out: dict[str, dict[str, float]] = {}
    for value in sorted(set(labels.tolist())):
        groups = np.flatnonzero(labels == value)
        found = replay_outcomes(log, replay, k, groups=groups, creator=None, new_item=None)
        out[value] = {m: found[m] for m in ("groups", *metrics) if m in found}
    return out

