"""`POST /v1/feedback` on the wire: its bodies, and a body validated event by event (bad events are
rejected by index, good ones kept).

Two passes. `decode_feedback` checks the envelope (a bad envelope fails the whole request) and each
event's shape and ranges with `FeedbackEvent`. `admit` then checks each event against the drift
scheme of the versions it names (known model version and calibration, known task, known segment
fields, not from the future, no duplicate (event_id, task) in the batch) and groups the admitted ones by
(scheme, task) as numpy columns, ready for `FeedbackCounters.record`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema

from app.artifacts.common import Identifier
from app.errors import InvalidRequest, PayloadTooLarge
from app.monitoring.catalog import SchemeKey, SchemeMiss
from app.monitoring.scheme import DriftScheme
from app.protocol.cost import check_json_containers

__all__ = [
    "FeedbackEvent",
    "FeedbackGroup",
    "FeedbackRequest",
    "FeedbackResponse",
    "RejectedEvent",
    "admit",
    "decode_feedback",
]

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
    arm: Literal["stable", "canary"] = Field(
        default="stable", description="`arm` of the score response (stable or canary); counted as a label of the"
        " feedback metrics so a canary's calibration is judged beside the stable triple's",
    )
    request_id: str | None = Field(
        default=None, min_length=1, max_length=256,
        description="the `request_id` of the served /v1/score request: with `candidate_id`, what joins this"
        " outcome to the served log (`fusionrank logs join`)",
    )
    candidate_id: str | None = Field(
        default=None, min_length=1, max_length=256, description="the served candidate's `id`"
    )


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


# Clock skew tolerated between the caller and this replica.
MAX_FUTURE = timedelta(minutes=5)

_FIXES = {
    "prediction": "send the calibrated probability of the task from the score response (a number in [0, 1])",
    "label": "send 1 if the outcome happened and 0 if it did not, as a JSON integer",
    "event_time": "send an ISO 8601 time with a time zone, e.g. 2026-11-26T07:00:00Z",
    "model": "copy `versions.model` from the score response",
    "model_version": "copy `versions.model_version` from the score response",
    "calibration_version": "copy `versions.calibration_version` from the score response",
    "event_id": "send a unique id of 1-256 characters per event",
    "task": "send one of the model's task names",
    "segment": "send segment values as strings keyed by a categorical feature name",
}


@dataclass(slots=True)
class FeedbackGroup:
    """Admitted events of one task of one scheme, as columns."""

    scheme: DriftScheme
    task: str
    arm: str = "stable"
    predictions: list[float] = field(default_factory=list)
    labels: list[float] = field(default_factory=list)
    segments: dict[str, list[str | None]] = field(default_factory=dict)

    def columns(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        return np.asarray(self.predictions, dtype=np.float64), np.asarray(self.labels, dtype=np.float64)


def decode_feedback(body: bytes, *, max_events: int) -> tuple[list[tuple[int, FeedbackEvent]], list[RejectedEvent]]:
    """Parse the envelope (errors fail the request) and each event (errors reject that event)."""
    check_json_containers(body, max_events, "events")
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest.at("body", f"not valid JSON: {exc}", "send a JSON object {\"events\": [...]}") from None
    if not isinstance(data, dict):
        raise InvalidRequest.at("body", "expected a JSON object", "send a JSON object {\"events\": [...]}")
    extra = sorted(set(data) - {"events"})
    if extra:
        name = extra[0] if extra[0].isidentifier() else f"[{orjson.dumps(extra[0]).decode()}]"  # e.g. "" (fuzzing)
        raise InvalidRequest.at(name, "unknown field", "send only `events`")
    events = data.get("events")
    if not isinstance(events, list) or not events:
        raise InvalidRequest.at("events", "expected a non-empty array of events", "send at least one event")
    if len(events) > max_events:
        raise PayloadTooLarge.at(
            "events", f"{len(events)} events is more than the limit of {max_events}",
            "split the batch, or raise FUSIONRANK_FEEDBACK_MAX_EVENTS",
        )
    decoded: list[tuple[int, FeedbackEvent]] = []
    rejected: list[RejectedEvent] = []
    for index, item in enumerate(events):
        try:
            decoded.append((index, FeedbackEvent.model_validate(item)))
        except ValidationError as exc:
            rejected.append(_rejection(index, exc))
    return decoded, rejected


def admit(
    events: list[tuple[int, FeedbackEvent]],
    schemes: Mapping[SchemeKey, DriftScheme | SchemeMiss],
    *,
    now: datetime | None = None,
) -> tuple[list[FeedbackGroup], list[RejectedEvent]]:
    """Check events against the schemes of the versions they name; group the good ones."""
    latest = (now or datetime.now(UTC)) + MAX_FUTURE
    groups: dict[tuple[SchemeKey, str, str], FeedbackGroup] = {}
    rejected: list[RejectedEvent] = []
    seen: dict[tuple[str, str], int] = {}  # (event_id, task): a click and a purchase may share an event_id

    def reject(index: int, field: str, reason: str) -> None:
        rejected.append(RejectedEvent(index=index, field=field, reason=reason))

    for index, event in events:
        key = (event.model, event.model_version, event.calibration_version)
        scheme = schemes[key]
        first = seen.setdefault((event.event_id, event.task), index)
        if first != index:
            reject(index, "event_id", f"duplicate of event {first} in this batch (fix: send each outcome once)")
        elif isinstance(scheme, SchemeMiss):
            reject(index, scheme.field, scheme.reason)
        elif event.task not in scheme.edges:
            reject(index, "task", f"unknown task {event.task!r} for {event.model}/{event.model_version}"
                                  f" (fix: {_FIXES['task']}: {list(scheme.tasks)})")
        elif unknown := sorted(set(event.segment) - set(scheme.segments)):
            reject(index, f"segment.{unknown[0]}", f"{unknown[0]!r} is not a segment field of"
                   f" {event.model}/{event.model_version} (fix: use one of {sorted(scheme.segments)})")
        elif event.event_time > latest:
            reject(index, "event_time", f"{event.event_time.isoformat()} is in the future"
                   " (fix: send the time the outcome was observed; check the caller's clock)")
        else:
            group = groups.get((key, event.task, event.arm))
            if group is None:
                group = groups[(key, event.task, event.arm)] = FeedbackGroup(
                    scheme, event.task, event.arm, segments={f: [] for f in scheme.segments}
                )
            group.predictions.append(event.prediction)
            group.labels.append(float(event.label))
            for name, values in group.segments.items():
                values.append(event.segment.get(name))
    rejected.sort(key=lambda r: r.index)
    return list(groups.values()), rejected


def _rejection(index: int, exc: ValidationError) -> RejectedEvent:
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = ".".join(str(p) for p in first.get("loc", ())) or "event"
    top = loc.split(".")[0]
    reason = str(first.get("msg"))
    if first.get("type") == "extra_forbidden":
        reason = "unknown field"
    fix = _FIXES.get(top, "see the FeedbackEvent schema at /docs")
    more = f"; and {len(errors) - 1} more problem(s)" if len(errors) > 1 else ""
    return RejectedEvent(index=index, field=loc, reason=f"{reason} (fix: {fix}){more}")
