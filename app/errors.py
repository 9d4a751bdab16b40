"""The one exception tree of fusionrank; `app.api.errors` maps it to HTTP in one table.

Every error carries what a user needs to fix it: the field (a JSON path such as
``candidates[3].features.price`` or a path inside a file), the candidate index when one is at
fault, the file when a file is, and a sentence saying what would fix it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

__all__ = [
    "ArtifactError",
    "BodyTimeout",
    "Conflict",
    "DeadlineExceeded",
    "ErrorDetail",
    "FusionrankError",
    "InvalidRequest",
    "NotFound",
    "NotReady",
    "Overloaded",
    "PayloadTooLarge",
    "PolicyError",
    "Unauthorized",
    "UnsupportedMediaType",
    "ValueAt",
]


@dataclass(frozen=True, slots=True)
class ValueAt:
    """A bad value among the candidates, located whatever the body's shape: `app.protocol` names it by the
    body's path (`columns.price[3]` for columns and Arrow). Its text is the row path, the default."""

    section: str  # "features" or "attributes"
    name: str
    index: int  # the candidate's position in the request

    def __str__(self) -> str:
        return f"candidates[{self.index}].{self.section}.{self.name}"


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    """One problem: where it is and how to fix it."""

    message: str
    field: str | None = None
    candidate_index: int | None = None
    fix: str | None = None
    value: ValueAt | None = None  # a bad candidate value, for the protocol to name by the body's path

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"message": self.message}
        if self.field is not None:
            out["field"] = self.field
        if self.candidate_index is not None:
            out["candidate_index"] = self.candidate_index
        if self.fix is not None:
            out["fix"] = self.fix
        return out


class FusionrankError(Exception):
    """Root of every error fusionrank raises on purpose."""

    code = "fusionrank_error"

    def __init__(self, message: str, *, details: list[ErrorDetail] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: list[ErrorDetail] = details or []


class InvalidRequest(FusionrankError):
    """A request body that cannot be scored as sent (HTTP 422)."""

    code = "invalid_request"

    @classmethod
    def at(
        cls, field: str | ValueAt, message: str, fix: str, *, candidate_index: int | None = None
    ) -> Self:
        """One-problem shortcut: the message names the field, the detail carries the fix."""
        detail = ErrorDetail(message=message, field=str(field), candidate_index=candidate_index, fix=fix,
                             value=field if isinstance(field, ValueAt) else None)
        return cls(f"{field}: {message}", details=[detail])


class PayloadTooLarge(InvalidRequest):
    """More candidates or more bytes than this service accepts (HTTP 413)."""

    code = "payload_too_large"


class UnsupportedMediaType(InvalidRequest):
    """A body in a media type or content coding this endpoint does not accept (HTTP 415)."""

    code = "unsupported_media_type"


class NotFound(FusionrankError):
    """An unknown surface, policy version, model or route target (HTTP 404)."""

    code = "not_found"


class NotReady(FusionrankError):
    """No bundle is loaded and warmed yet, or the service is shutting down (HTTP 503)."""

    code = "not_ready"


class Overloaded(FusionrankError):
    """More requests in flight than this replica admits; retry after a moment (HTTP 503)."""

    code = "overloaded"


class BodyTimeout(InvalidRequest):
    """A request body that did not arrive in time, or arrived below the minimum rate (HTTP 408)."""

    code = "body_timeout"


class DeadlineExceeded(FusionrankError):
    """The request's deadline passed before its answer was ready; the work was abandoned (HTTP 504)."""

    code = "deadline_exceeded"


class Unauthorized(FusionrankError):
    """A missing or wrong admin token (HTTP 401)."""

    code = "unauthorized"


class Conflict(FusionrankError):
    """A change that the current state does not allow, e.g. a rollback with no history (HTTP 409)."""

    code = "conflict"


class ArtifactError(FusionrankError):
    """A model bundle, calibration or policy file that cannot be used; names file, field and fix."""

    code = "artifact_error"

    def __init__(
        self,
        path: object,
        field: str,
        message: str,
        fix: str,
        *,
        details: list[ErrorDetail] | None = None,
    ) -> None:
        self.path = str(path)
        self.field = field
        self.fix = fix
        text = f"{self.path}: {field}: {message} (fix: {fix})" if field else f"{self.path}: {message} (fix: {fix})"
        super().__init__(
            text, details=details or [ErrorDetail(message=message, field=field or None, fix=fix)]
        )


class PolicyError(ArtifactError):
    """A policy file that fails validation against its grammar, model or calibration."""

    code = "policy_error"
