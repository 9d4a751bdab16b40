"""`/v1/score` on the wire, both directions: a body of an accepted media type into the envelope and an
`AnswerRequest`, and an `Answer` into the body the client asked for (JSON, or Arrow)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from app.errors import InvalidRequest
from app.protocol.arrow import ARROW_MEDIA_TYPE, arrow_answer, decode_arrow_request
from app.protocol.arrow_out import answer_stream
from app.protocol.response import response_without_rows, score_response
from app.protocol.rows import decode_score_request, encode_json_answer
from app.protocol.schemas import ScoreEnvelope
from app.serving.answer import Answer, AnswerRequest, ShadowRanking
from app.serving.columns import CandidateColumns

__all__ = ["decode_score", "encode_score", "name_values"]


def decode_score(
    body: bytes, media_type: str, *, max_candidates: int, max_decoded_bytes: int
) -> tuple[ScoreEnvelope, AnswerRequest]:
    """The envelope (read again to encode the answer) and the request `app.serving.answer` takes."""
    if media_type == ARROW_MEDIA_TYPE:
        envelope, scored = decode_arrow_request(
            body, max_candidates=max_candidates, max_decoded_bytes=max_decoded_bytes
        )
    else:
        envelope, scored = decode_score_request(body, max_candidates=max_candidates)
    return envelope, AnswerRequest(envelope.surface, scored, envelope.policy_version, envelope)


def encode_score(envelope: ScoreEnvelope, answer: Answer, *, arrow: bool) -> bytes:
    """The answer as a `ScoreResponse` in JSON, or as an Arrow stream when `arrow`."""
    outcome = answer.outcome
    if arrow and not envelope.options.debug:
        return _arrow_columns(envelope, answer)
    body = score_response(envelope, answer.request.candidates, outcome)
    if answer.canary_live:
        body["arm"] = answer.arm
    if answer.shadow is not None and envelope.options.debug:
        body["shadow"] = _shadow_report(answer.shadow, answer.request.candidates.ids)
    if arrow:
        return arrow_answer(body, outcome.binding.bundle.manifest.task_names())
    return encode_json_answer(body)


def _arrow_columns(envelope: ScoreEnvelope, answer: Answer) -> bytes:
    """The Arrow answer of a request without `debug`, its columns taken from the outcome's arrays: no
    Python object per answered value (the same stream as `arrow_answer(score_response(...))`)."""
    outcome, scored = answer.outcome, answer.request.candidates
    rest = response_without_rows(envelope, scored, outcome)
    if answer.canary_live:
        rest["arm"] = answer.arm
    ranked = outcome.ranked
    ids = scored.ids
    predictions = np.ascontiguousarray(outcome.probabilities[ranked].T)
    return answer_stream(rest, [ids[i] for i in ranked.tolist()], outcome.utility[ranked], list(predictions),
                         outcome.binding.bundle.manifest.task_names())


def _shadow_report(shadow: ShadowRanking, ids: Any) -> dict[str, Any]:
    """`ShadowReport`: the comparison with the shadow policy, or why it could not rank the request."""
    comparison = shadow.comparison
    if comparison is None:
        return {"policy_version": shadow.policy_version, "error": shadow.error}
    return {
        "policy_version": shadow.policy_version,
        "topk_overlap": comparison.overlap,
        "mean_rank_shift": comparison.mean_rank_shift,
        "missing": comparison.missing,
        "ranked_ids": [ids[i] for i in comparison.shadow_ranked.tolist()],
    }


def name_values(error: InvalidRequest, request: AnswerRequest) -> InvalidRequest:
    """`error` with each bad candidate value (`ErrorDetail.value`) named by its path in the body:
    `candidates[3].features.price` for rows, `columns.price[3]` for column JSON and Arrow."""
    if all(detail.value is None for detail in error.details):
        return error
    columnar = isinstance(request.candidates.features, CandidateColumns)
    message, details = error.message, []
    for detail in error.details:
        at = detail.value
        if at is not None:
            path = f"columns.{at.name}[{at.index}]" if columnar else f"candidates[{at.index}].{at.section}.{at.name}"
            if detail.field is not None:
                message = message.replace(detail.field, path)
            detail = replace(detail, field=path)
        details.append(detail)
    return type(error)(message, details=details)
