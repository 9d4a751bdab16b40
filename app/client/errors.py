"""The client's errors: one root, `ClientError`, so that a caller can catch everything the client raises."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["APIError", "ClientError", "ConnectionFailed", "DeadlineExceeded", "ErrorDetail", "Unavailable"]


class ClientError(Exception):
    """Anything the fusionrank client raises."""


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    """One problem the server named: the field (`candidates[3].features.price`), the candidate, the fix."""

    message: str
    field: str | None = None
    candidate_index: int | None = None
    fix: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ErrorDetail:
        return cls(str(data.get("message", "")), data.get("field"), data.get("candidate_index"), data.get("fix"))


class APIError(ClientError):
    """The server answered with an error status: its `{"error": {code, message, details}}` envelope."""

    def __init__(
        self, status: int, code: str, message: str, details: tuple[ErrorDetail, ...] = (),
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.request_id = request_id


class Unavailable(APIError):
    """503 (overloaded, not ready, draining) on every attempt the retry policy and the deadline allowed."""


class DeadlineExceeded(ClientError):
    """The call's deadline passed: before an attempt, while waiting to retry, or on the server (504)."""


class ConnectionFailed(ClientError):
    """The server could not be reached on any attempt (the httpx error is the `__cause__`)."""
