"""Answer one scoring request on one snapshot: the data plane of `/v1/score`, without HTTP or a wire format.

`answer()` picks the arm (the surface's canary for its sticky share of unpinned requests, else the
pinned or active policy), scores, offers the request to the shadow-model worker, ranks it under the
shadow policy for comparison, and hands the result to an `AnswerObserver` (the service's metrics).
The caller decodes the request before (`app.protocol`) and encodes the `Answer` after.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from app.errors import FusionrankError
from app.serving.bundle import PolicyBinding, ServingSnapshot, SurfaceRoute
from app.serving.cascade import score_request
from app.serving.routing import key_value, routes_to_canary
from app.serving.scorer import ScoreInput, ScoreOutcome
from app.serving.shadow import RankComparison, compare_rankings, shadow_rank
from app.serving.shadow_model import ShadowJob, ShadowModelQueue

__all__ = ["Answer", "AnswerObserver", "AnswerRequest", "ShadowRanking", "answer"]


@dataclass(frozen=True, slots=True)
class AnswerRequest:
    """A decoded request: the surface, the candidates, an optional policy pin, and the request envelope
    as sent (a mapping or a model), from which a canary reads its sticky key (`context.user_id`...)."""

    surface: str
    candidates: ScoreInput
    policy_version: str | None = None
    envelope: object = None


@dataclass(frozen=True, slots=True)
class ShadowRanking:
    """The surface's shadow policy ranked the same request; `comparison` is None when it failed (`error`)."""

    policy_version: str
    comparison: RankComparison | None
    error: str | None
    seconds: float


@dataclass(frozen=True, slots=True)
class Answer:
    """What answered a request and how: the outcome, the arm ("stable" or "canary"; `canary_live` says
    whether the surface has a canary at all), the shadow comparison if any, the scoring wall time and
    when scoring started (`time.perf_counter()`; tracing lays the stage spans out from it)."""

    request: AnswerRequest
    outcome: ScoreOutcome
    arm: str
    canary_live: bool
    shadow: ShadowRanking | None
    seconds: float
    started: float = 0.0


class AnswerObserver(Protocol):
    """Receives every answer (`app.monitoring.answers.AnswerMetrics` counts it)."""

    def answered(self, answer: Answer) -> None: ...


def answer(
    snapshot: ServingSnapshot,
    request: AnswerRequest,
    *,
    shadows: ShadowModelQueue | None = None,
    observer: AnswerObserver | None = None,
    checkpoint: Callable[[], None] | None = None,
) -> Answer:
    """Score `request` on `snapshot` (read once: the whole request uses it).

    checkpoint() runs just before scoring, e.g. to raise `DeadlineExceeded` for a request that waited
    past its deadline; it is not scored at all then.
    """
    route = snapshot.route(request.surface)
    binding, arm = _arm(route, request)
    if checkpoint is not None:
        checkpoint()
    t0 = time.perf_counter()
    outcome = score_request(binding, request.candidates, request_id=key_value(request.envelope, "request_id"))
    seconds = time.perf_counter() - t0
    if route.shadow_model is not None and request.policy_version is None and arm == "stable":
        _offer_shadow_model(shadows, route, outcome, request.candidates)
    shadow = route.shadow_binding() if request.policy_version is None else None
    ranking = _shadow(shadow, outcome, request.candidates) if shadow is not None and shadow is not binding else None
    answered = Answer(request, outcome, arm, route.canary is not None, ranking, seconds, t0)
    if observer is not None:
        observer.answered(answered)
    return answered


def _arm(route: SurfaceRoute, request: AnswerRequest) -> tuple[PolicyBinding, str]:
    """The binding that answers: the canary's for its sticky share of unpinned requests, else the route's."""
    canary = route.canary
    if canary is not None and request.policy_version is None and routes_to_canary(
        route.surface, key_value(request.envelope, canary.key), canary.fraction, canary.salt
    ):
        return canary.binding, "canary"
    return route.binding(request.policy_version), "stable"


def _offer_shadow_model(
    shadows: ShadowModelQueue | None, route: SurfaceRoute, outcome: ScoreOutcome, scored: ScoreInput
) -> None:
    """Hand the request to the shadow-model worker (sampled, never blocking; dropped when full)."""
    candidate = route.shadow_model
    if shadows is None or candidate is None:
        return
    job = ShadowJob(route.surface, candidate, outcome.binding, scored, outcome.ranked, outcome.probabilities)
    shadows.offer(job, route.shadow_model_fraction)


def _shadow(shadow: PolicyBinding, outcome: ScoreOutcome, scored: ScoreInput) -> ShadowRanking:
    """Rank under the shadow policy and compare; a shadow failure never fails the request."""
    t0 = time.perf_counter()
    try:
        ranked = shadow_rank(outcome, shadow, scored)
    except FusionrankError as exc:
        return ShadowRanking(shadow.policy.version, None, exc.message, time.perf_counter() - t0)
    comparison = compare_rankings(outcome.ranked, ranked, len(scored.ids))
    return ShadowRanking(shadow.policy.version, comparison, None, time.perf_counter() - t0)
