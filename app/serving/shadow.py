"""Rank a request under a surface's shadow policy and compare with the answer actually served.

When the shadow policy runs on the same model bundle and calibration as the served one, the
calibrated predictions are reused and only the policy stage (utility, guardrails, slate) runs
again; otherwise the shadow binding scores the request from scratch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.serving.attributes import extract_attributes
from app.serving.bundle import PolicyBinding
from app.serving.cascade import score_request
from app.serving.guardrails import evaluate_guardrails
from app.serving.scorer import ScoreInput, ScoreOutcome
from app.serving.slate import apply_slate
from app.serving.utility import compose_utility, non_finite

__all__ = ["RankComparison", "compare_rankings", "shadow_rank"]

IntArray = npt.NDArray[np.intp]


@dataclass(frozen=True, slots=True)
class RankComparison:
    """How the shadow policy's answer differs from the served one.

    overlap: share of the served candidates that the shadow also answers within as many ranks
    (1.0 = the same set; an empty served answer counts as 1.0 when the shadow's is empty too);
    mean_rank_shift: mean |served rank - shadow rank| over candidates both answer (None if none);
    missing: served candidates the shadow does not answer at all.
    """

    overlap: float
    mean_rank_shift: float | None
    missing: int
    shadow_ranked: IntArray


def shadow_rank(served: ScoreOutcome, shadow: PolicyBinding, request: ScoreInput) -> IntArray:
    """Candidate indices in the order the shadow policy would answer them."""
    if (shadow.bundle is not served.binding.bundle or shadow.calibration is not served.binding.calibration
            or shadow.policy.file.ranking is not None  # a `ranking` block: the scorer's own fill order
            or shadow.first_stage is not None or served.cascade is not None):  # cut candidates have no predictions
        return score_request(shadow, request).ranked
    policy = shadow.policy
    attributes = extract_attributes(request.attributes, policy.file.attributes)
    effective = policy.resolve(request.context_attributes)
    _, utility = compose_utility(served.probabilities, attributes, policy, effective.weights)
    removed = evaluate_guardrails(served.probabilities, attributes, policy, effective).any(axis=1)
    unrankable = non_finite(served.probabilities, utility, policy.unread_tasks)
    if unrankable is not None:  # removed as `score` removes them
        removed |= unrankable.any_row
    limits = [k for k in (request.top_k, policy.file.slate.top_k) if k is not None]
    top_k = min(limits) if limits else None
    return apply_slate(np.flatnonzero(~removed), utility, attributes, policy.file.slate, top_k).ranked


def compare_rankings(served: IntArray, shadow: IntArray, candidates: int) -> RankComparison:
    """served, shadow: candidate indices in answer order, out of `candidates` in the request."""
    k = len(served)
    if k == 0:
        return RankComparison(1.0 if len(shadow) == 0 else 0.0, None, 0, shadow)
    overlap = len(np.intersect1d(served, shadow[:k])) / k
    position = np.full(candidates, -1, dtype=np.intp)
    position[shadow] = np.arange(len(shadow))
    shadow_positions = position[served]
    both = shadow_positions >= 0
    shift = float(np.abs(np.arange(k)[both] - shadow_positions[both]).mean()) if both.any() else None
    return RankComparison(float(overlap), shift, int((~both).sum()), shadow)
