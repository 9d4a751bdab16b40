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

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from app.artifacts.policy import PolicyFile
from app.offline.tuning.logs import CandidateLog
from app.offline.tuning.ndcg import discounts, ideal_dcg
from app.offline.tuning.objectives import observed_gains
from app.offline.tuning.replay import PolicyReplay

__all__ = [
    "MIX_LIMIT",
    "filtered_names",
    "outcome_metrics",
    "outcome_sums",
    "replay_outcomes",
    "segment_outcomes",
]

Float = npt.NDArray[np.float64]
MIX_LIMIT = 8  # values per attribute shown in the report (results.json has them all)
_COUNT = "#n:"  # sums that only divide others
_CREATOR = "#creator="  # served slots per creator


def replay_outcomes(
    log: CandidateLog, replay: PolicyReplay, k: int, *, groups: npt.NDArray[np.intp] | None = None,
    mix: Sequence[str] = (), creator: str | None = "creator_id", new_item: str | None = "is_new",
) -> dict[str, float]:
    """Metrics of one replay over all groups, or over the group positions `groups`."""
    sums = outcome_sums(log, replay, k, groups=groups, mix=mix, creator=creator, new_item=new_item)
    return outcome_metrics(sums, log.tasks, k, filtered=filtered_names(replay.policy), mix=mix)


def filtered_names(policy: PolicyFile) -> list[str]:
    """The guardrails and slate rules of a policy, in report order (`filtered:<name>` metrics)."""
    slate = policy.slate
    return ([guard.name for guard in policy.guardrails] + [rule.name for rule in slate.max_per_value]
            + [rule.name for rule in slate.max_matching])


def outcome_sums(
    log: CandidateLog, replay: PolicyReplay, k: int, *, groups: npt.NDArray[np.intp] | None = None,
    mix: Sequence[str] = (), creator: str | None = "creator_id", new_item: str | None = "is_new",
) -> dict[str, float]:
    """The additive parts of `replay_outcomes` (sums and counts over groups, slots and candidates): the
    sums of disjoint sets of groups add up to the sums of their union, so shards (Spark) merge them."""
    chosen = np.arange(log.n_groups) if groups is None else groups
    served = replay.served[chosen, :k]
    valid = served >= 0
    rows = np.where(valid, served, 0)
    out: dict[str, float] = {"groups": float(len(chosen)), "slate_size": float(valid.sum(axis=1).sum())}
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
        out[f"ndcg@{k}:{task}"] = float((got[defined] / best[defined]).sum())
        out[f"{_COUNT}ndcg@{k}:{task}"] = float(defined.sum())
    for t, task in enumerate(log.tasks):
        out[f"expected:{task}"] = float(((flat_p[rows, t] * valid).sum(axis=1)).sum())
    out["utility"] = float((replay.utility[rows] * valid).sum(axis=1).sum())
    group_rows = log.row[chosen][log.mask[chosen]]
    out[f"{_COUNT}candidates"] = float(len(group_rows))
    for g, guard in enumerate(replay.policy.guardrails):
        out[f"filtered:{guard.name}"] = float((replay.guardrail[group_rows] == g).sum())
    for r, rule in enumerate(replay.slate_rules):
        out[f"filtered:{rule}"] = float((replay.slate_rule[group_rows] == r).sum())
    slots = served[valid]
    out[f"{_COUNT}slots"] = float(len(slots))
    for name in mix:
        values = log.columns[name][slots]
        keys, counts = np.unique(np.array([str(v) for v in values.tolist()], dtype=object), return_counts=True)
        for key, count in zip(keys.tolist(), counts.tolist(), strict=True):
            out[f"share:{name}={key}"] = float(count)
    if new_item is not None and new_item in log.columns:
        out["new_item_share"] = float(np.sum(log.columns[new_item][slots].astype(bool)))
    if creator is not None and creator in log.columns:
        creators = log.columns[creator][slots].astype(str)
        keys, codes, counts = np.unique(creators, return_inverse=True, return_counts=True)
        for key, count in zip(keys.tolist(), counts.tolist(), strict=True):
            out[f"{_CREATOR}{key}"] = float(count)
        # distinct creators per slate: count first occurrences of (group, creator)
        slate_of_slot = np.nonzero(valid)[0]
        pairs = np.unique(slate_of_slot.astype(np.int64) * (len(counts) + 1) + codes.reshape(-1))
        out["creators_per_slate"] = float(len(pairs))
    return out


def outcome_metrics(
    sums: Mapping[str, float], tasks: Sequence[str], k: int, *, filtered: Sequence[str], mix: Sequence[str] = (),
) -> dict[str, float]:
    """`replay_outcomes` from (merged) `outcome_sums`: means over groups, shares of slots and candidates."""
    groups = sums["groups"]
    out: dict[str, float] = {"groups": groups, "slate_size": sums["slate_size"] / groups}
    for task in tasks:
        defined = sums[f"{_COUNT}ndcg@{k}:{task}"]
        out[f"ndcg@{k}:{task}"] = sums[f"ndcg@{k}:{task}"] / defined if defined > 0 else float("nan")
    for task in tasks:
        out[f"expected:{task}"] = sums[f"expected:{task}"] / groups
    out["utility"] = sums["utility"] / groups
    candidates = max(sums[f"{_COUNT}candidates"], 1.0)
    for name in filtered:
        out[f"filtered:{name}"] = sums[f"filtered:{name}"] / candidates
    slots = sums[f"{_COUNT}slots"]
    total = max(slots, 1.0)
    for name in mix:
        prefix = f"share:{name}="
        keys = sorted(key for key in sums if key.startswith(prefix))
        counts = np.array([sums[key] for key in keys])
        for i in np.argsort(-counts, kind="stable"):
            out[keys[i]] = float(counts[i] / total)
    if "new_item_share" in sums:
        out["new_item_share"] = sums["new_item_share"] / slots if slots else 0.0
    if "creators_per_slate" in sums:
        counts = np.array([sums[key] for key in sorted(key for key in sums if key.startswith(_CREATOR))])
        out["creator_hhi"] = float(((counts / total) ** 2).sum())
        out["creators_per_slate"] = float(sums["creators_per_slate"] / max(groups, 1.0))
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

