"""HTTP layer: routes, request/response schemas, the error -> HTTP table."""

from app.api.errors import STATUS_BY_ERROR
from app.protocol.feedback import FeedbackRequest, FeedbackResponse
from app.protocol.schemas import ScoreRequest, ScoreResponse

__all__ = ["STATUS_BY_ERROR", "FeedbackRequest", "FeedbackResponse", "ScoreRequest", "ScoreResponse"]
