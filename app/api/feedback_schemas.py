"""Bodies of `POST /v1/feedback`: observed outcomes of served predictions, and the per-event answer."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, WithJsonSchema

from app.artifacts.common import Identifier

__all__ = ["FeedbackEvent", "FeedbackRequest", "FeedbackResponse", "RejectedEvent"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FeedbackEvent(_Body):
    """One observed outcome of one served prediction of one task."""

    event_id: str = Field(
        min_length=1, max_length=256,
        description="the served candidate's event; with `task`, the deduplication key (a click and a purchase may"
        " share an event_id)",
    )
    task: str = Field(min_length=1, max_length=64, description="a task of the named model version")
    prediction: float = Field(
        ge=0.0, le=1.0, allow_inf_nan=False, description="the calibrated probability as served by /v1/score"
    )
    label: int = Field(ge=0, le=1, strict=True, description="the outcome: 1 happened, 0 did not (JSON integer)")
    segment: dict[str, Annotated[str, Field(max_length=256)]] = Field(
        default_factory=dict,
        description="segment values by field (categorical features of the model, e.g. device); unknown values"
        " are counted as __other__",
    )
    model: Identifier = Field(description="`versions.model` of the score response")
    model_version: Identifier
    calibration_version: Identifier
    event_time: AwareDatetime = Field(description="when the outcome was observed (ISO 8601 with a time zone)")


class FeedbackRequest(_Body):
    """Body of `POST /v1/feedback` (events are validated one by one; see `FeedbackResponse`)."""

    events: Annotated[
        list[dict[str, Any]],
        WithJsonSchema({"type": "array", "minItems": 1, "items": FeedbackEvent.model_json_schema()}),
    ]


class RejectedEvent(_Body):
    index: int = Field(description="position of the event in `events`")
    field: str = Field(description="the event field at fault, e.g. `prediction`")
    reason: str = Field(description="what is wrong and how to fix it")


class FeedbackResponse(_Body):
    """Good events are counted even when others in the same batch are rejected."""

    accepted: int
    rejected: list[RejectedEvent]
    duplicates: list[int] = Field(
        default_factory=list,
        description="indices of events whose (event_id, task) this replica already counted (a retry): not counted"
        " again",
    )
