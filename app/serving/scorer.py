"""The scoring pipeline: features -> model -> calibration -> utility -> guardrails -> slate.

Inputs arrive validated at the edge (`app.api`); this module trusts them and works on whole
columns. Per-stage wall times are returned so the API can export them as latency histograms.
A candidate whose calibrated prediction or utility is not finite (a model emitting NaN, a policy
loaded around validation) is removed first, at stage "guardrail" with the service's own rule
`non_finite_prediction` or `non_finite_utility`: an answer never carries a NaN or an infinity
(which JSON would turn into `null`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from app.artifacts.policy import NON_FINITE_PREDICTION, NON_FINITE_UTILITY
from app.artifacts.policy_ranking import HISTORY_RULE
from app.serving.attributes import AttributeColumns, extract_attributes
from app.serving.bundle import PolicyBinding
from app.serving.calibration import sigmoid
from app.serving.columns import Candidates
from app.serving.exploration import explore
from app.serving.features import EncodedFeatures
from app.serving.first_stage import CascadeTrace
from app.serving.guardrails import evaluate_guardrails
from app.serving.policy import EffectivePolicy
from app.serving.ranking import RankingTrace, rank_slate, seen_mask
from app.serving.slate import apply_slate
from app.serving.utility import compose_utility, non_finite

__all__ = ["Filtered", "ScoreInput", "ScoreOutcome", "score"]


@dataclass(frozen=True, slots=True)
class ScoreInput:
    """A validated scoring request: ids, and the candidates' features and attributes as rows or columns."""

    ids: Sequence[str]
    features: Candidates
    attributes: Candidates
    context_features: Mapping[str, Any] = field(default_factory=dict)
    context_attributes: Mapping[str, Any] = field(default_factory=dict)
    top_k: int | None = None
    # Request history (`context.seen_ids`, `context.negative_feedback`), read by a policy's `ranking.history`.
    seen_ids: Sequence[str] = ()
    negative_feedback: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Filtered:
    """Candidates removed by one rule at one stage (`cascade`, `guardrail` or `slate`); at stage `guardrail`, the rule
    is a policy guardrail's name or the service's own `non_finite_prediction` / `non_finite_utility`."""

    indices: npt.NDArray[np.intp]
    stage: str
    rule: str


@dataclass(slots=True)
class ScoreOutcome:
    binding: PolicyBinding
    effective: EffectivePolicy
    logits: npt.NDArray[np.float32]  # [B, T]
    probabilities: npt.NDArray[np.float64]  # [B, T] calibrated
    contributions: npt.NDArray[np.float64]  # [B, K]
    utility: npt.NDArray[np.float64]  # [B]
    triggered: npt.NDArray[np.bool_]  # [B, G] every guardrail decision
    attributes: AttributeColumns  # the declared attributes, as read
    ranked: npt.NDArray[np.intp]  # answer order
    filtered: list[Filtered]
    timings: dict[str, float]  # stage -> seconds
    # [len(ranked)] conditional probability of each answered candidate at its position given the ones above
    # it (`app.serving.exploration`); None when the policy does not explore (every position is certain).
    propensity: npt.NDArray[np.float64] | None = None
    encoded: EncodedFeatures | None = None  # what the model saw (the served log may record it)
    ranking: RankingTrace | None = None  # what the policy's `ranking` block did; None without one
    # The first stage's pass when the policy has a `cascade` (`app.serving.cascade`); its cut candidates
    # are in `filtered` at stage "cascade", with NaN logits, predictions and utility (never scored by `model`).
    cascade: CascadeTrace | None = None

    def raw_probabilities(self) -> npt.NDArray[np.float64]:
        return sigmoid(self.logits.astype(np.float64))


def score(binding: PolicyBinding, request: ScoreInput, *, request_id: str | None = None) -> ScoreOutcome:
    """Score one request on one immutable binding; `request_id` seeds the policy's exploration, if any."""
    bundle, policy = binding.bundle, binding.policy
    clock = time.perf_counter
    t0 = clock()
    encoded = bundle.encoder.encode(request.features, request.context_features)
    attributes = extract_attributes(request.attributes, policy.file.attributes)
    t1 = clock()
    logits = bundle.runner.run(encoded.numeric, encoded.categorical)
    t2 = clock()
    probabilities = binding.calibration.apply(logits, encoded.categorical)
    t3 = clock()
    effective = policy.resolve(request.context_attributes)
    contributions, utility = compose_utility(probabilities, attributes, policy, effective.weights)
    triggered = evaluate_guardrails(probabilities, attributes, policy, effective)
    removed = np.asarray(triggered.any(axis=1))
    filtered: list[Filtered] = []
    unrankable = non_finite(probabilities, utility, policy.unread_tasks)
    if unrankable is not None:
        for mask, rule in ((unrankable.prediction, NON_FINITE_PREDICTION), (unrankable.utility, NON_FINITE_UTILITY)):
            hit = np.flatnonzero(mask)
            if hit.size:
                filtered.append(Filtered(hit, "guardrail", rule))
        # Counted once, under the service's rule; the policy's guardrails explain the rest.
        unusable = unrankable.any_row
        triggered_reason = np.asarray(removed & ~unusable)
        removed = np.asarray(removed | unusable)
    else:
        triggered_reason = removed
    if triggered_reason.any():
        # The reason is the first guardrail (in file order) that matched; debug shows all of them.
        first = np.argmax(triggered, axis=1)
        for g, guard in enumerate(policy.guardrails):
            hit = np.flatnonzero(triggered_reason & (first == g))
            if hit.size:
                filtered.append(Filtered(hit, "guardrail", guard.name))
    ranking, trace = policy.file.ranking, None
    if ranking is not None and ranking.history is not None and ranking.history.previously_seen and request.seen_ids:
        seen = seen_mask(request.ids, request.seen_ids) & ~removed
        if seen.any():
            filtered.append(Filtered(np.flatnonzero(seen), "guardrail", HISTORY_RULE))
            removed = removed | seen
    kept = np.flatnonzero(~removed)
    top_k = _min_defined(request.top_k, policy.file.slate.top_k)
    if ranking is None:
        slate = apply_slate(kept, utility, attributes, policy.file.slate, top_k)
    else:
        slate, trace = rank_slate(kept, utility, attributes, ranking, policy.file.slate, top_k,
                                  request.negative_feedback)
    filtered.extend(Filtered(idx, "slate", rule) for idx, rule in slate.dropped)
    ranked, propensity = slate.ranked, None
    exploration = policy.file.exploration
    if exploration is not None and len(ranked):
        pool = np.concatenate([slate.ranked, slate.truncated])
        drawn = utility if trace is None else trace.score  # the ranking score orders the pool
        ranked, propensity = explore(exploration, pool, drawn, len(slate.ranked), request_id)
    t4 = clock()
    timings = {"features": t1 - t0, "inference": t2 - t1, "calibration": t3 - t2, "utility": t4 - t3}
    return ScoreOutcome(
        binding=binding, effective=effective, logits=logits, probabilities=probabilities,
        contributions=contributions, utility=utility, triggered=triggered, attributes=attributes,
        ranked=ranked,
        filtered=filtered, timings=timings, propensity=propensity, encoded=encoded, ranking=trace,
    )


def _min_defined(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)
