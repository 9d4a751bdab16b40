"""What every `/v1/score` format shares: the envelope's errors as field paths, the candidate-id checks,
and the `ScoreInput` a decoded body becomes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from pydantic import ValidationError

from app.errors import ErrorDetail, InvalidRequest, PayloadTooLarge
from app.protocol.schemas import MAX_ID_LENGTH, ScoreEnvelope
from app.serving.columns import Candidates
from app.serving.scorer import ScoreInput

__all__ = ["MAX_COLUMNS", "check_batch", "check_context_size", "score_input", "too_many_candidates", "validation_error"]

_STR = frozenset({str})
# Columns of a column-JSON or Arrow body: far more than any model's features and a policy's attributes.
MAX_COLUMNS = 2048
# Problems listed in one error body: enough to fix a request, bounded whatever the request.
MAX_DETAILS = 20


def validation_error(exc: ValidationError, prefix: str = "") -> InvalidRequest:
    """A pydantic error as an `InvalidRequest` whose details name each field path."""
    details = []
    for error in exc.errors(include_url=False)[:MAX_DETAILS]:
        path = prefix
        for part in error["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            elif not part or "." in part or "[" in part:  # e.g. an unknown key "": keep the path readable
                path += f"[{orjson.dumps(part).decode()}]"
            else:
                path += f".{part}" if path else part
        index = error["loc"][1] if error["loc"][:1] == ("candidates",) and len(error["loc"]) > 1 else None
        details.append(
            ErrorDetail(
                message=error["msg"], field=path or None,
                candidate_index=index if isinstance(index, int) else None,
                fix="correct this field (see the ScoreRequest schema at /docs)",
            )
        )
    first = details[0]
    return InvalidRequest(f"{first.field}: {first.message}", details=details)


def check_context_size(raw: object) -> None:
    """413 for a context with more features or attributes than `MAX_COLUMNS`, before pydantic reads them."""
    context = raw.get("context") if isinstance(raw, dict) else None
    if not isinstance(context, dict):
        return
    for name in ("features", "attributes"):
        value = context.get(name)
        if isinstance(value, dict) and len(value) > MAX_COLUMNS:
            raise PayloadTooLarge.at(
                f"context.{name}", f"{len(value)} entries is more than the limit of {MAX_COLUMNS}",
                "send only the features and attributes the model and the policy read",
            )


def too_many_candidates(field: str, count: int, max_candidates: int) -> PayloadTooLarge:
    """413 for a batch of `count` candidates (counted or, for Arrow, declared) over the limit."""
    return PayloadTooLarge.at(
        field, f"{count} candidates is more than the limit of {max_candidates}",
        "split the batch, or raise FUSIONRANK_MAX_CANDIDATES",
    )


def check_batch(
    ids: list[Any], max_candidates: int, path: Callable[[int], str], *, strings_checked: bool = False
) -> None:
    """At least one and at most `max_candidates` candidates, with unique string ids of 1-256 characters.

    path(i) names candidate i's id in the body (`candidates[3].id`, `columns.id[3]`). `strings_checked`:
    the caller has already found every id a string of 1-256 characters (an Arrow column, in C++).
    """
    if not ids:
        raise InvalidRequest.at(path(0).split("[")[0], "empty batch", "send at least one candidate")
    if len(ids) > max_candidates:
        raise too_many_candidates(path(0).split("[")[0], len(ids), max_candidates)
    if not strings_checked and not (
        set(map(type, ids)) == _STR and min(map(len, ids)) > 0 and max(map(len, ids)) <= MAX_ID_LENGTH
    ):
        index = next(i for i, v in enumerate(ids) if not (type(v) is str and 0 < len(v) <= MAX_ID_LENGTH))
        raise InvalidRequest.at(
            path(index), "missing, not a string, empty or longer than 256 characters",
            "give every candidate a unique string id of 1-256 characters", candidate_index=index,
        )
    if len(set(ids)) != len(ids):
        seen: dict[str, int] = {}
        for index, cid in enumerate(ids):
            if cid in seen:
                raise InvalidRequest.at(
                    path(index), f"duplicate candidate id {cid!r} (first at index {seen[cid]})",
                    "send each candidate once", candidate_index=index,
                )
            seen[cid] = index


def score_input(request: ScoreEnvelope, ids: list[Any], features: Candidates, attributes: Candidates) -> ScoreInput:
    """The scoring input of a decoded body: ids checked by `check_batch`, candidates as rows or columns."""
    context = request.context
    return ScoreInput(
        ids=ids,
        features=features,
        attributes=attributes,
        context_features=context.features,
        context_attributes=context.attributes,
        top_k=request.options.top_k,
        seen_ids=context.seen_ids,
        negative_feedback=context.negative_feedback,
    )
