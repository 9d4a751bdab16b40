"""`/v1/score` decode -> answer -> encode without HTTP: bad candidate values are located by serving and
named by the protocol with the body's own path."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from app.errors import InvalidRequest
from app.protocol.arrow import ARROW_MEDIA_TYPE
from app.protocol.media import JSON_MEDIA_TYPE
from app.protocol.score import decode_score, encode_score, name_values
from app.serving.answer import answer
from tests.api.test_columnar import to_arrow, to_columns

MiB = 1 << 20


def _bodies(sample: dict[str, Any]) -> dict[str, tuple[bytes, str]]:
    return {
        "rows": (orjson.dumps(sample), JSON_MEDIA_TYPE),
        "columns": (orjson.dumps(to_columns(sample)), JSON_MEDIA_TYPE),
        "arrow": (to_arrow(sample), ARROW_MEDIA_TYPE),
    }


@pytest.mark.parametrize(
    ("shape", "field"),
    [("rows", "candidates[3].features.item_price"), ("columns", "columns.item_price[3]"),
     ("arrow", "columns.item_price[3]")],
)
def test_a_bad_value_is_named_by_the_path_of_the_body_it_came_in(
    client: TestClient, sample_request: dict[str, Any], shape: str, field: str
) -> None:
    bad = copy.deepcopy(sample_request)
    bad["candidates"][3]["features"]["item_price"] = 1e39  # finite in JSON, infinite as float32
    body, media = _bodies(bad)[shape]
    _, request = decode_score(body, media, max_candidates=100, max_decoded_bytes=MiB)
    with pytest.raises(InvalidRequest) as caught:
        answer(client.app.state.fusionrank.snapshot, request)
    assert caught.value.details[0].value is not None  # serving located it, without a path
    named = name_values(caught.value, request)
    assert named.details[0].field == field and named.details[0].candidate_index == 3
    assert named.message.startswith(f"{field}: ")


def test_the_three_shapes_answer_alike_without_http(client: TestClient, sample_request: dict[str, Any]) -> None:
    snapshot = client.app.state.fusionrank.snapshot
    answers = []
    for body, media in _bodies(sample_request).values():
        envelope, request = decode_score(body, media, max_candidates=100, max_decoded_bytes=MiB)
        answers.append(orjson.loads(encode_score(envelope, answer(snapshot, request), arrow=False)))
    assert answers[0] == answers[1]
    assert [c["id"] for c in answers[0]["candidates"]] == [c["id"] for c in answers[2]["candidates"]]
