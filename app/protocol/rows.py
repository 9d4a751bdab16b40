"""Turn a raw `/v1/score` body into a validated `ScoreInput`, or a 4xx naming what is wrong."""

from __future__ import annotations

from collections.abc import Callable
from itertools import repeat
from typing import Any

import orjson
from pydantic import ValidationError

from app.errors import ErrorDetail, InvalidRequest, PayloadTooLarge
from app.protocol.schemas import MAX_ID_LENGTH, ColumnarScoreRequest, ScoreEnvelope, ScoreRequest
from app.serving.columns import CandidateColumns, Candidates
from app.serving.scorer import ScoreInput

__all__ = ["check_batch", "decode_score_request", "validation_error"]

_CANDIDATE_KEYS = frozenset({"id", "features", "attributes"})
_EMPTY: dict[str, Any] = {}
_DICT = frozenset({dict})
_STR = frozenset({str})
_LIST = frozenset({list})


def validation_error(exc: ValidationError, prefix: str = "") -> InvalidRequest:
    """A pydantic error as an `InvalidRequest` whose details name each field path."""
    details = []
    for error in exc.errors(include_url=False):
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


def decode_score_request(body: bytes, *, max_candidates: int) -> tuple[ScoreEnvelope, ScoreInput]:
    """Parse and check the envelope and the shape of every candidate (not yet its features).

    A body with `columns` instead of `candidates` is column-oriented JSON (`ColumnarScoreRequest`).
    """
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest.at(
            "body", f"not valid JSON: {exc}", "send a JSON object (NaN and Infinity are not JSON)"
        ) from None
    if not isinstance(raw, dict):
        raise InvalidRequest.at(
            "body", f"expected a JSON object, got {type(raw).__name__}", "send a ScoreRequest object"
        )
    if "columns" in raw and "candidates" not in raw:
        return _decode_columns(raw, max_candidates)
    request = _envelope(raw)
    candidates: list[dict[str, Any]] = raw["candidates"]
    ids: list[Any] = list(map(dict.get, candidates, repeat("id")))
    check_batch(ids, max_candidates, lambda i: f"candidates[{i}].id")
    if not set().union(*map(dict.keys, candidates)) <= _CANDIDATE_KEYS:
        unknown = next(i for i, c in enumerate(candidates) if not c.keys() <= _CANDIDATE_KEYS)
        extra = sorted(candidates[unknown].keys() - _CANDIDATE_KEYS)
        raise InvalidRequest.at(
            f"candidates[{unknown}].{extra[0]}", "unknown candidate field",
            "a candidate has only `id`, `features` and `attributes`", candidate_index=unknown,
        )
    features = list(map(dict.get, candidates, repeat("features"), repeat(_EMPTY)))
    attributes = list(map(dict.get, candidates, repeat("attributes"), repeat(_EMPTY)))
    for name, column in (("features", features), ("attributes", attributes)):
        if not set(map(type, column)) <= _DICT:
            index = next(i for i, v in enumerate(column) if type(v) is not dict)
            raise InvalidRequest.at(
                f"candidates[{index}].{name}", f"expected an object, got {type(column[index]).__name__}",
                f"send `{name}` as a JSON object of name -> value", candidate_index=index,
            )
    return request, _score_input(request, ids, features, attributes)


def _envelope(raw: dict[str, Any]) -> ScoreEnvelope:
    """Validate everything but the candidates, which stay the dicts orjson built (no per-candidate copy).

    When `candidates` is not a list of objects, the full `ScoreRequest` model says what is wrong.
    """
    candidates = raw.get("candidates")
    if type(candidates) is list and set(map(type, candidates)) <= _DICT:
        rest = {key: value for key, value in raw.items() if key != "candidates"}
        try:
            return ScoreEnvelope.model_validate(rest)
        except ValidationError as exc:
            raise validation_error(exc) from None
    try:
        return ScoreRequest.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc) from None


def check_batch(ids: list[Any], max_candidates: int, path: Callable[[int], str]) -> None:
    """At least one and at most `max_candidates` candidates, with unique string ids of 1-256 characters.

    path(i) names candidate i's id in the body (`candidates[3].id`, `columns.id[3]`).
    """
    if not ids:
        raise InvalidRequest.at(path(0).split("[")[0], "empty batch", "send at least one candidate")
    if len(ids) > max_candidates:
        raise PayloadTooLarge.at(
            path(0).split("[")[0], f"{len(ids)} candidates is more than the limit of {max_candidates}",
            "split the batch, or raise FUSIONRANK_MAX_CANDIDATES",
        )
    if not (set(map(type, ids)) == _STR and min(map(len, ids)) > 0 and max(map(len, ids)) <= MAX_ID_LENGTH):
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


def _decode_columns(raw: dict[str, Any], max_candidates: int) -> tuple[ScoreEnvelope, ScoreInput]:
    """Column-oriented JSON: every column a list as long as `columns.id`."""
    columns = raw["columns"]
    if type(columns) is dict and set(map(type, columns.values())) <= _LIST:
        # The usual case: validate the envelope only; the columns stay the lists orjson built
        # (validating them as `list[Any]` would copy every one), and the encoders check their values.
        rest = {key: value for key, value in raw.items() if key != "columns"}
        validate: Callable[[dict[str, Any]], ScoreEnvelope] = ScoreEnvelope.model_validate
    else:  # the full model says what is wrong with `columns`
        rest, validate = raw, ColumnarScoreRequest.model_validate
    try:
        request = validate(rest)
    except ValidationError as exc:
        raise validation_error(exc) from None
    ids = columns.get("id")
    if ids is None:
        raise InvalidRequest.at("columns.id", "missing", "send the candidate ids as `columns.id`")
    check_batch(ids, max_candidates, lambda i: f"columns.id[{i}]")
    for name, column in columns.items():
        if len(column) != len(ids):
            raise InvalidRequest.at(
                f"columns.{name}", f"{len(column)} values for {len(ids)} candidates (`columns.id`)",
                "send one value per candidate in every column (null where a candidate lacks it)",
            )
    candidates = CandidateColumns(size=len(ids), columns=columns)
    return request, _score_input(request, ids, candidates, candidates)


def _score_input(
    request: ScoreEnvelope, ids: list[Any], features: Candidates, attributes: Candidates
) -> ScoreInput:
    context = request.context
    return ScoreInput(
        ids=ids,  # checked to be str above
        features=features,
        attributes=attributes,
        context_features=context.features,
        context_attributes=context.attributes,
        top_k=request.options.top_k,
    )
