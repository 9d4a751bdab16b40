"""Wire formats of the HTTP API, both directions, without HTTP: the request and response schemas, one
codec module per format (row JSON, column JSON, Arrow IPC, feedback JSON), the accepted media types,
and what a body may cost to parse."""

from app.protocol.arrow import ARROW_MEDIA_TYPE, arrow_answer, decode_arrow_request
from app.protocol.cost import PARSE_AMPLIFICATION, parse_memory_bound
from app.protocol.feedback import FeedbackEvent, FeedbackRequest, FeedbackResponse, admit, decode_feedback
from app.protocol.media import FEEDBACK_MEDIA_TYPES, JSON_MEDIA_TYPE, SCORE_MEDIA_TYPES, body_media_type
from app.protocol.response import score_response
from app.protocol.rows import decode_score_request, encode_json_answer
from app.protocol.schemas import ColumnarScoreRequest, ScoreEnvelope, ScoreRequest, ScoreResponse
from app.protocol.score import decode_score, encode_score, name_values

__all__ = [
    "ARROW_MEDIA_TYPE",
    "FEEDBACK_MEDIA_TYPES",
    "JSON_MEDIA_TYPE",
    "PARSE_AMPLIFICATION",
    "SCORE_MEDIA_TYPES",
    "ColumnarScoreRequest",
    "FeedbackEvent",
    "FeedbackRequest",
    "FeedbackResponse",
    "ScoreEnvelope",
    "ScoreRequest",
    "ScoreResponse",
    "admit",
    "arrow_answer",
    "body_media_type",
    "decode_arrow_request",
    "decode_feedback",
    "decode_score",
    "decode_score_request",
    "encode_json_answer",
    "encode_score",
    "name_values",
    "parse_memory_bound",
    "score_response",
]
