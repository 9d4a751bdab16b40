"""Column JSON in: a `/v1/score` JSON body with `columns` (name -> one value per candidate) instead of
`candidates`. Its answer is the same JSON answer as for rows (`app.protocol.rows.encode_json_answer`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from app.errors import InvalidRequest, PayloadTooLarge
from app.protocol.envelope import MAX_COLUMNS, check_batch, check_context_size, score_input, validation_error
from app.protocol.schemas import ColumnarScoreRequest, ScoreEnvelope
from app.serving.columns import CandidateColumns
from app.serving.scorer import ScoreInput

__all__ = ["decode_columns"]

_LIST = frozenset({list})


def decode_columns(raw: dict[str, Any], max_candidates: int) -> tuple[ScoreEnvelope, ScoreInput]:
    """A parsed column-JSON body: every column a list as long as `columns.id`."""
    columns = raw["columns"]
    if type(columns) is dict and len(columns) > MAX_COLUMNS:  # before pydantic lists each bad column
        raise PayloadTooLarge.at(
            "columns", f"{len(columns)} columns is more than the limit of {MAX_COLUMNS}",
            "send only the model's features and the policy's attributes",
        )
    if type(columns) is dict and set(map(type, columns.values())) <= _LIST:
        # The usual case: validate the envelope only; the columns stay the lists orjson built
        # (validating them as `list[Any]` would copy every one), and the encoders check their values.
        rest = {key: value for key, value in raw.items() if key != "columns"}
        validate: Callable[[dict[str, Any]], ScoreEnvelope] = ScoreEnvelope.model_validate
    else:  # the full model says what is wrong with `columns`
        rest, validate = raw, ColumnarScoreRequest.model_validate
    check_context_size(rest)
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
    return request, score_input(request, ids, candidates, candidates)
