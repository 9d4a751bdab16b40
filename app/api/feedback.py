"""`POST /v1/feedback`: observed outcomes of served predictions, counted for calibration-drift metrics."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Request

from app.api.body import read_body
from app.api.deps import StateDep
from app.monitoring.catalog import SchemeKey, SchemeMiss
from app.monitoring.scheme import DriftScheme
from app.monitoring.served_log import OutcomeRow
from app.protocol.feedback import FeedbackEvent, FeedbackRequest, FeedbackResponse, admit, decode_feedback
from app.protocol.media import FEEDBACK_MEDIA_TYPES, body_media_type

__all__ = ["openapi_components", "router"]

router = APIRouter(tags=["monitoring"])

_ERROR_DOC = {"description": "error body: {error: {code, message, details: [{field, fix}]}}"}


@router.post(
    "/v1/feedback",
    response_model=FeedbackResponse,
    responses={413: _ERROR_DOC, 415: _ERROR_DOC, 422: _ERROR_DOC, 503: _ERROR_DOC, 504: _ERROR_DOC},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FeedbackRequest"}}},
        }
    },
)
async def record_feedback(request: Request, state: StateDep) -> FeedbackResponse:
    """Count outcome events per task x bucket and task x segment; bad events are rejected by index,
    events whose (event_id, task) was counted lately (a retried batch) are listed in `duplicates` and not
    counted again."""
    settings, metrics = state.settings, state.metrics
    headers = request.headers
    body_media_type(headers.get("content-type"), headers.get("content-encoding"), FEEDBACK_MEDIA_TYPES)
    body = await read_body(request, settings.max_body_bytes)
    events, rejected = decode_feedback(body, max_events=settings.feedback_max_events)
    schemes: dict[SchemeKey, DriftScheme | SchemeMiss] = {}
    for _, event in events:
        key = (event.model, event.model_version, event.calibration_version)
        if key not in schemes:
            cached = metrics.schemes.cached(key)
            if cached is None:  # versions not seen yet: read them from the model store, off the loop
                cached = await anyio.to_thread.run_sync(metrics.schemes.load, settings.model_store, key)
            schemes[key] = cached
    # From here to the end nothing awaits: checking, counting and remembering ids is one atomic step,
    # so two concurrent copies of a batch cannot both be counted.
    window = state.feedback_ids
    duplicates = [index for index, event in events if (event.event_id, event.task) in window]
    if duplicates:
        metrics.feedback_duplicates.inc(len(duplicates))
        known = set(duplicates)
        events = [(index, event) for index, event in events if index not in known]
    groups, refused = admit(events, schemes)
    accepted = 0
    for group in groups:
        predictions, labels = group.columns()
        metrics.feedback.record(group.scheme, group.task, predictions, labels, group.segments, group.arm)
        accepted += len(predictions)
    refused_at = {item.index for item in refused}
    window.add((event.event_id, event.task) for index, event in events if index not in refused_at)
    if state.served_log is not None:  # the outcomes log: every event counted, never waited for
        state.served_log.offer_outcomes([_outcome(event) for index, event in events if index not in refused_at])
    rejected = sorted(rejected + refused, key=lambda r: r.index)
    for item in rejected:
        top = item.field.split(".")[0]  # bounded label values: a client may send any unknown key
        metrics.feedback.rejected.labels(top if top in FeedbackEvent.model_fields else "other").inc()
    return FeedbackResponse(accepted=accepted, rejected=rejected, duplicates=duplicates)


def _outcome(event: FeedbackEvent) -> OutcomeRow:
    return OutcomeRow(
        event.event_id, event.request_id, event.candidate_id, event.task, event.label, event.event_time,
        event.prediction, event.model, event.model_version, event.calibration_version,
    )


def openapi_components() -> dict[str, Any]:
    """Schemas referenced by the hand-declared request body."""
    return {"FeedbackRequest": FeedbackRequest.model_json_schema(ref_template="#/components/schemas/{model}")}
