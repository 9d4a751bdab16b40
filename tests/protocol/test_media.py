"""Content types and encodings are matched exactly; anything else is 415 naming the header."""

from __future__ import annotations

import orjson
import pytest
from fastapi.testclient import TestClient

from app.errors import UnsupportedMediaType
from app.protocol.arrow import ARROW_MEDIA_TYPE
from app.protocol.media import FEEDBACK_MEDIA_TYPES, JSON_MEDIA_TYPE, SCORE_MEDIA_TYPES, body_media_type


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        (None, JSON_MEDIA_TYPE),
        ("application/json", JSON_MEDIA_TYPE),
        ("Application/JSON", JSON_MEDIA_TYPE),
        ("application/json; charset=utf-8", JSON_MEDIA_TYPE),
        ('application/json;charset="UTF-8"', JSON_MEDIA_TYPE),
        ("application/json;", JSON_MEDIA_TYPE),
        (ARROW_MEDIA_TYPE, ARROW_MEDIA_TYPE),
    ],
)
def test_accepted_media_types(content_type: str | None, expected: str) -> None:
    assert body_media_type(content_type, None, SCORE_MEDIA_TYPES) == expected


@pytest.mark.parametrize(
    ("content_type", "encoding", "field"),
    [
        ("application/evil+json", None, "content-type"),
        ("text/json", None, "content-type"),
        ("application/jsonx", None, "content-type"),
        ("application/json; charset=latin-1", None, "content-type"),
        ("application/json; boundary=x", None, "content-type"),
        (f"{ARROW_MEDIA_TYPE}; charset=utf-8", None, "content-type"),
        ("application/vnd.apache.arrow.file", None, "content-type"),
        ("", None, "content-type"),
        ("application/json", "gzip", "content-encoding"),
        ("application/json", "br", "content-encoding"),
        ("application/json", "identity, gzip", "content-encoding"),
    ],
)
def test_anything_else_is_415_naming_the_header(content_type: str, encoding: str | None, field: str) -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        body_media_type(content_type, encoding, SCORE_MEDIA_TYPES)
    detail = caught.value.details[0]
    assert detail.field == field and detail.fix


def test_identity_encoding_is_accepted() -> None:
    assert body_media_type("application/json", "identity", FEEDBACK_MEDIA_TYPES) == JSON_MEDIA_TYPE
    assert body_media_type("application/json", "Identity ", FEEDBACK_MEDIA_TYPES) == JSON_MEDIA_TYPE


def test_feedback_takes_json_only() -> None:
    with pytest.raises(UnsupportedMediaType, match="content-type"):
        body_media_type(ARROW_MEDIA_TYPE, None, FEEDBACK_MEDIA_TYPES)


@pytest.mark.parametrize(
    "headers",
    [{"content-type": "application/evil+json"}, {"content-type": ARROW_MEDIA_TYPE},
     {"content-type": "application/json", "content-encoding": "gzip"}],
)
def test_feedback_refuses_other_types_and_encodings_with_415(client: TestClient, headers: dict[str, str]) -> None:
    response = client.post("/v1/feedback", content=orjson.dumps({"events": []}), headers=headers)
    assert response.status_code == 415, response.text
    error = response.json()["error"]
    assert error["code"] == "unsupported_media_type" and error["details"][0]["field"] in headers
