"""The public names of app.protocol, pinned by name: a change to them is a decision, not an accident."""

from __future__ import annotations

import app.protocol

PROTOCOL = {
    "ARROW_MEDIA_TYPE", "FEEDBACK_MEDIA_TYPES", "JSON_MEDIA_TYPE", "PARSE_AMPLIFICATION", "SCORE_MEDIA_TYPES",
    "ColumnarScoreRequest", "FeedbackEvent", "FeedbackRequest", "FeedbackResponse", "ScoreEnvelope", "ScoreRequest",
    "ScoreResponse", "admit", "arrow_answer", "body_media_type", "decode_arrow_request", "decode_feedback",
    "decode_score", "decode_score_request", "encode_json_answer", "encode_score", "name_values",
    "parse_memory_bound", "score_response",
}


def test_protocol_exports_exactly_its_public_names() -> None:
    assert set(app.protocol.__all__) == PROTOCOL
    assert all(hasattr(app.protocol, name) for name in PROTOCOL)


def test_parse_amplification_is_keyed_by_the_accepted_media_types() -> None:
    assert set(app.protocol.PARSE_AMPLIFICATION) == set(app.protocol.SCORE_MEDIA_TYPES)
    assert all(factor > 1 for factor in app.protocol.PARSE_AMPLIFICATION.values())
