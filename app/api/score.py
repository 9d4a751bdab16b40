"""`POST /v1/score`: rank a batch of candidates under a surface's policy."""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from app.api.body import read_json_body
from app.api.decode import decode_score_request
from app.api.deps import StateDep
from app.api.encode import score_response
from app.api.schemas import ScoreRequest, ScoreResponse
from app.errors import NotReady
from app.serving.scorer import score

__all__ = ["router"]

router = APIRouter(tags=["scoring"])

_ERROR_DOC = {"description": "error body: {error: {code, message, details: [{field, candidate_index, fix}]}}"}
_OPENAPI_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ScoreRequest"}}},
    }
}


@router.post(
    "/v1/score",
    response_model=None,
    responses={200: {"model": ScoreResponse}, 404: _ERROR_DOC, 413: _ERROR_DOC, 422: _ERROR_DOC, 503: _ERROR_DOC},
    openapi_extra=_OPENAPI_BODY,
)
async def score_candidates(request: Request, state: StateDep) -> Response:
    """Rank candidates: model, calibration, utility, guardrails and slate rules of the surface's policy."""
    if not state.ready:
        raise NotReady("no serving snapshot is loaded and warmed yet; see /readyz for the load problems")
    settings, metrics = state.settings, state.metrics
    t0 = time.perf_counter()
    body = await read_json_body(request, settings.max_body_bytes)
    envelope, scored = decode_score_request(body, max_candidates=settings.max_candidates)
    snapshot = state.snapshot  # read once: the whole request uses this snapshot
    binding = snapshot.route(envelope.surface).binding(envelope.policy_version)
    t1 = time.perf_counter()
    outcome = score(binding, scored)
    t2 = time.perf_counter()
    content = orjson.dumps(score_response(envelope, scored, outcome))
    t3 = time.perf_counter()
    stage = metrics.stage_latency
    stage.labels("decode").observe(t1 - t0)
    for name, seconds in outcome.timings.items():
        stage.labels(name).observe(seconds)
    stage.labels("encode").observe(t3 - t2)
    metrics.candidates.labels(envelope.surface).inc(len(scored.ids))
    metrics.observe_served(binding, outcome.probabilities)  # every scored candidate, before filters
    for group in outcome.filtered:
        metrics.filtered.labels(envelope.surface, group.stage, group.rule).inc(len(group.indices))
    return Response(content, media_type="application/json")


def openapi_components() -> dict[str, Any]:
    """Schemas referenced by the hand-declared request body."""
    return {
        "ScoreRequest": ScoreRequest.model_json_schema(ref_template="#/components/schemas/{model}"),
    }
