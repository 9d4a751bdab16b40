"""`POST /v1/score`: rank a batch of candidates under a surface's policy."""

from __future__ import annotations

import time
from typing import Any

import anyio
import anyio.lowlevel
import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response
from starlette.types import Scope

from app.api.body import read_body
from app.api.deps import StateDep
from app.api.limits import check_deadline
from app.api.state import ServiceState
from app.errors import FusionrankError, NotReady
from app.monitoring.metrics import ServiceMetrics
from app.protocol.arrow import ARROW_MEDIA_TYPE, arrow_answer, decode_arrow_request
from app.protocol.media import SCORE_MEDIA_TYPES, body_media_type
from app.protocol.response import score_response
from app.protocol.rows import decode_score_request
from app.protocol.schemas import ColumnarScoreRequest, ScoreEnvelope, ScoreRequest, ScoreResponse
from app.serving.bundle import PolicyBinding, SurfaceRoute
from app.serving.routing import key_value, routes_to_canary
from app.serving.scorer import ScoreInput, ScoreOutcome, score
from app.serving.shadow import compare_rankings, shadow_rank
from app.serving.shadow_model import ShadowJob, ShadowModelQueue

__all__ = ["router"]

router = APIRouter(tags=["scoring"])

_ERROR_DOC = {"description": "error body: {error: {code, message, details: [{field, candidate_index, fix}]}}"}
_OPENAPI_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/ScoreRequest"},
                        {"$ref": "#/components/schemas/ColumnarScoreRequest"},
                    ]
                }
            },
            ARROW_MEDIA_TYPE: {
                "schema": {"type": "string", "format": "binary"},
                "description": "Arrow IPC stream: `id` + one column per feature/attribute; envelope as JSON "
                "in the schema metadata key `fusionrank.request`",
            },
        },
    }
}


@router.post(
    "/v1/score",
    response_model=None,
    responses={
        200: {"model": ScoreResponse, "content": {ARROW_MEDIA_TYPE: {}},
              "description": "JSON, or Arrow with `Accept: application/vnd.apache.arrow.stream`"},
        404: _ERROR_DOC, 413: _ERROR_DOC, 415: _ERROR_DOC, 422: _ERROR_DOC, 503: _ERROR_DOC, 504: _ERROR_DOC},
    openapi_extra=_OPENAPI_BODY,
)
async def score_candidates(request: Request, state: StateDep) -> Response:
    """Rank candidates: model, calibration, utility, guardrails and slate rules of the surface's policy."""
    if not state.ready:
        raise NotReady("no serving snapshot is loaded and warmed yet; see /readyz for the load problems")
    settings = state.settings
    t0 = time.perf_counter()
    headers = request.headers
    media = body_media_type(headers.get("content-type"), headers.get("content-encoding"), SCORE_MEDIA_TYPES)
    arrow_in = media == ARROW_MEDIA_TYPE
    arrow_out = ARROW_MEDIA_TYPE in request.headers.get("accept", "")
    body = await read_body(request, settings.max_body_bytes)
    deadline = request.scope  # carries the request's deadline, if any (app.api.limits)
    shadows: ShadowModelQueue | None = getattr(request.app.state, "shadow_models", None)
    if settings.score_in_thread:
        content = await anyio.to_thread.run_sync(
            _answer, state, body, arrow_in, arrow_out, t0, deadline, shadows, limiter=state.scoring_threads
        )
    else:
        async with state.scoring_turn:
            content = _answer(state, body, arrow_in, arrow_out, t0, deadline, shadows)
            # Keep the turn for one pass of the loop: the next in line scores after the loop has read its
            # sockets (admitting or shedding new requests), not back to back with this one. Shielded:
            # finished work is answered.
            await anyio.lowlevel.cancel_shielded_checkpoint()
    return Response(content, media_type=ARROW_MEDIA_TYPE if arrow_out else "application/json")


def _answer(
    state: ServiceState, body: bytes, arrow_in: bool, arrow_out: bool, t0: float, deadline: Scope,
    shadows: ShadowModelQueue | None = None,
) -> bytes:
    """Decode, score, count and encode one request: all of its CPU work, on whichever thread runs it."""
    metrics = state.metrics
    check_deadline(deadline)  # waited in line past its deadline: not even decoded
    settings = state.settings
    if arrow_in:
        envelope, scored = decode_arrow_request(
            body, max_candidates=settings.max_candidates, max_decoded_bytes=settings.decoded_bytes_limit()
        )
    else:
        envelope, scored = decode_score_request(body, max_candidates=settings.max_candidates)
    snapshot = state.snapshot  # read once: the whole request uses this snapshot
    route = snapshot.route(envelope.surface)
    binding, arm = _arm(route, envelope)
    t1 = time.perf_counter()
    check_deadline(deadline)  # a request that waited past its deadline is not scored at all
    outcome = score(binding, scored)
    t2 = time.perf_counter()
    answer = score_response(envelope, scored, outcome)
    if route.canary is not None:
        answer["arm"] = arm
    if route.shadow_model is not None and envelope.policy_version is None and arm == "stable":
        _offer_shadow_model(shadows, route, outcome, scored)
    shadow_seconds = 0.0
    shadow = route.shadow_binding() if envelope.policy_version is None else None
    if shadow is not None and shadow is not binding:
        s0 = time.perf_counter()
        report = _shadow(route, shadow, outcome, scored, metrics)
        if envelope.options.debug:
            answer["shadow"] = report
        shadow_seconds = time.perf_counter() - s0
        metrics.stage_latency.labels("shadow").observe(shadow_seconds)
    content = arrow_answer(answer, binding.bundle.manifest.task_names()) if arrow_out else orjson.dumps(answer)
    t3 = time.perf_counter() - shadow_seconds
    stage = metrics.stage_latency
    stage.labels("decode").observe(t1 - t0)
    for name, seconds in outcome.timings.items():
        stage.labels(name).observe(seconds)
    stage.labels("encode").observe(t3 - t2)
    metrics.candidates.labels(envelope.surface).inc(len(scored.ids))
    top = float(outcome.utility[outcome.ranked[0]]) if outcome.ranked.size else None
    metrics.observe_triple(envelope.surface, arm, binding, len(scored.ids), t2 - t1, top)
    metrics.observe_served(binding, outcome.probabilities)  # every scored candidate, before filters
    for group in outcome.filtered:
        metrics.filtered.labels(envelope.surface, group.stage, group.rule).inc(len(group.indices))
    return content


def _arm(route: SurfaceRoute, envelope: ScoreEnvelope) -> tuple[PolicyBinding, str]:
    """The binding that answers: the canary's for its sticky share of unpinned requests, else the route's."""
    canary = route.canary
    if canary is not None and envelope.policy_version is None and routes_to_canary(
        route.surface, key_value(envelope, canary.key), canary.fraction
    ):
        return canary.binding, "canary"
    return route.binding(envelope.policy_version), "stable"


def _offer_shadow_model(
    shadows: ShadowModelQueue | None, route: SurfaceRoute, outcome: ScoreOutcome, scored: ScoreInput
) -> None:
    """Hand the request to the shadow-model worker (sampled, never blocking; dropped when full)."""
    candidate = route.shadow_model
    if shadows is None or candidate is None:
        return
    job = ShadowJob(route.surface, candidate, outcome.binding, scored, outcome.ranked, outcome.probabilities)
    shadows.offer(job, route.shadow_model_fraction)


def _shadow(
    route: SurfaceRoute, shadow: PolicyBinding, outcome: ScoreOutcome, scored: ScoreInput, metrics: ServiceMetrics
) -> dict[str, Any]:
    """Rank under the shadow policy, export the comparison; a shadow failure never fails the request."""
    labels = (route.surface, shadow.policy.version)
    try:
        ranked = shadow_rank(outcome, shadow, scored)
    except FusionrankError as exc:
        metrics.shadow_errors.labels(*labels).inc()
        return {"policy_version": shadow.policy.version, "error": exc.message}
    comparison = compare_rankings(outcome.ranked, ranked, len(scored.ids))
    metrics.shadow_scored.labels(*labels).inc()
    metrics.shadow_overlap.labels(*labels).observe(comparison.overlap)
    if comparison.mean_rank_shift is not None:
        metrics.shadow_rank_shift.labels(*labels).observe(comparison.mean_rank_shift)
    return {
        "policy_version": shadow.policy.version,
        "topk_overlap": comparison.overlap,
        "mean_rank_shift": comparison.mean_rank_shift,
        "missing": comparison.missing,
        "ranked_ids": [scored.ids[i] for i in ranked.tolist()],
    }


def openapi_components() -> dict[str, Any]:
    """Schemas referenced by the hand-declared request body."""
    return {
        name: model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, model in (("ScoreRequest", ScoreRequest), ("ColumnarScoreRequest", ColumnarScoreRequest))
    }
