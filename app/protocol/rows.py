"""Row JSON, both directions: a `/v1/score` JSON body in (one object per candidate; a body with
`columns` is handed to `app.protocol.columns`), the JSON answer out."""

from __future__ import annotations

from itertools import repeat
from typing import Any

import orjson
from pydantic import ValidationError

from app.errors import InvalidRequest
from app.protocol.columns import decode_columns
from app.protocol.cost import check_json_containers
from app.protocol.envelope import check_batch, check_context_size, score_input, too_many_candidates, validation_error
from app.protocol.schemas import ScoreEnvelope, ScoreRequest
from app.serving.scorer import ScoreInput

__all__ = ["decode_score_request", "encode_json_answer"]

_CANDIDATE_KEYS = frozenset({"id", "features", "attributes"})
_EMPTY: dict[str, Any] = {}
_DICT = frozenset({dict})


def decode_score_request(body: bytes, *, max_candidates: int) -> tuple[ScoreEnvelope, ScoreInput]:
    """Parse and check the envelope and the shape of every candidate (not yet its features).

    A body with `columns` instead of `candidates` is column-oriented JSON (`ColumnarScoreRequest`).
    A body of more objects and arrays than `max_candidates` could need is refused before it is parsed.
    """
    check_json_containers(body, max_candidates, "candidates")
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
        return decode_columns(raw, max_candidates)
    request = _envelope(raw, max_candidates)
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
    return request, score_input(request, ids, features, attributes)


def _envelope(raw: dict[str, Any], max_candidates: int) -> ScoreEnvelope:
    """Validate everything but the candidates, which stay the dicts orjson built (no per-candidate copy).

    When `candidates` is not a list of objects, the full `ScoreRequest` model says what is wrong.
    """
    check_context_size(raw)
    candidates = raw.get("candidates")
    if type(candidates) is list and len(candidates) > max_candidates:  # before pydantic lists each bad item
        raise too_many_candidates("candidates", len(candidates), max_candidates)
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


def encode_json_answer(answer: dict[str, Any]) -> bytes:
    """The answer (`app.protocol.response.score_response`) as the JSON body of a `ScoreResponse`."""
    return orjson.dumps(answer)
