"""`POST /v1/score`: rank a batch of candidates under a surface's policy.

The route reads the body (api), decodes it (`app.protocol`), answers it (`app.serving.answer`, which
reports to `app.monitoring`) and encodes the answer (`app.protocol`).
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import anyio
import anyio.lowlevel
from fastapi import APIRouter, Request
from starlette.responses import Response
from starlette.types import Scope

from app.api.body import read_body
from app.api.deps import StateDep
from app.api.limits import check_deadline
from app.api.state import ServiceState
from app.errors import InvalidRequest, NotReady
from app.monitoring import tracing
from app.monitoring.answers import AnswerMetrics
from app.monitoring.logs import note_answer
from app.protocol.arrow import ARROW_MEDIA_TYPE
from app.protocol.media import JSON_MEDIA_TYPE, SCORE_MEDIA_TYPES, body_media_type
from app.protocol.schemas import ColumnarScoreRequest, ScoreRequest, ScoreResponse
from app.protocol.score import decode_score, encode_score, name_values
from app.serving.answer import answer
from app.serving.shadow_model import ShadowModelQueue

__all__ = ["router"]

router = APIRouter(tags=["scoring"])

_ERROR_DOC = {"description": "error body: {error: {code, message, details: [{field, candidate_index, fix}]}}"}
_OPENAPI_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "JSON rows or columns; or an Arrow IPC stream: `id` + one column per feature/attribute,"
        " the envelope as JSON in the schema metadata key `fusionrank.request`",
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/ScoreRequest"},
                        {"$ref": "#/components/schemas/ColumnarScoreRequest"},
                    ]
                }
            },
            ARROW_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
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
    t0 = time.perf_counter()
    headers = request.headers
    media = body_media_type(headers.get("content-type"), headers.get("content-encoding"), SCORE_MEDIA_TYPES)
    arrow_out = ARROW_MEDIA_TYPE in headers.get("accept", "")
    body = await read_body(request, state.settings.max_body_bytes)
    shadows: ShadowModelQueue | None = getattr(request.app.state, "shadow_models", None)
    work = partial(_answer, state, body, media, arrow_out, t0, request.scope, shadows)
    if state.settings.score_in_thread:
        content = await anyio.to_thread.run_sync(work, limiter=state.scoring_threads)
    else:
        async with state.scoring_turn:
            content = work()
            # Keep the turn for one pass of the loop: the next in line scores after the loop has read its
            # sockets (admitting or shedding new requests), not back to back with this one. Shielded:
            # finished work is answered.
            await anyio.lowlevel.cancel_shielded_checkpoint()
    return Response(content, media_type=ARROW_MEDIA_TYPE if arrow_out else JSON_MEDIA_TYPE)


def _answer(
    state: ServiceState, body: bytes, media: str, arrow_out: bool, t0: float, scope: Scope,
    shadows: ShadowModelQueue | None = None,
) -> bytes:
    """All of one request's CPU work, on whichever thread runs it: decode, answer, encode.

    `scope` carries the request's deadline, if any (app.api.limits): a request that waited in line past
    it is neither decoded nor scored.
    """
    check_deadline(scope)
    settings = state.settings
    envelope, call = decode_score(
        body, media, max_candidates=settings.max_candidates, max_decoded_bytes=settings.decoded_bytes_limit()
    )
    metrics = AnswerMetrics(state.metrics)
    t1 = time.perf_counter()
    deadline = partial(check_deadline, scope)
    try:
        answered = answer(state.snapshot, call, shadows=shadows, observer=metrics, checkpoint=deadline)
    except InvalidRequest as exc:  # a bad candidate value: named by its path in this body
        raise name_values(exc, call) from None
    t2 = time.perf_counter()
    content = encode_score(envelope, answered, arrow=arrow_out)
    t3 = time.perf_counter()
    metrics.coded(decode_seconds=t1 - t0, encode_seconds=t3 - t2)
    note_answer(answered)  # the access line's candidates, versions, arm (sampled requests only)
    if tracing.stage_spans is not None:
        tracing.stage_spans(answered, t0, t1, t2, t3)
    return content


def openapi_components() -> dict[str, Any]:
    """Schemas referenced by the hand-declared request body."""
    return {
        name: model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, model in (("ScoreRequest", ScoreRequest), ("ColumnarScoreRequest", ColumnarScoreRequest))
    }
