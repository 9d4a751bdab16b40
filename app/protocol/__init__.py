"""Wire formats of the HTTP API, both directions, without HTTP: the request and response schemas, and
one codec module per format (row JSON, column JSON, Arrow IPC, feedback JSON)."""

from app.protocol.arrow import ARROW_MEDIA_TYPE, arrow_answer, decode_arrow_request
from app.protocol.feedback import FeedbackEvent, FeedbackRequest, FeedbackResponse, admit, decode_feedback
from app.protocol.response import score_response
from app.protocol.rows import decode_score_request, encode_json_answer
from app.protocol.schemas import ColumnarScoreRequest, ScoreEnvelope, ScoreRequest, ScoreResponse

__all__ = [
    "ARROW_MEDIA_TYPE",
    "ColumnarScoreRequest",
    "FeedbackEvent",
    "FeedbackRequest",
    "FeedbackResponse",
    "ScoreEnvelope",
    "ScoreRequest",
    "ScoreResponse",
    "admit",
    "arrow_answer",
    "decode_arrow_request",
    "decode_feedback",
    "decode_score_request",
    "encode_json_answer",
    "score_response",
]
