"""The one table from fusionrank errors to HTTP, and the one error body shape.

Body: {"error": {"code", "message", "details": [{"message", "field", "candidate_index", "fix"}]}}
"""

from __future__ import annotations

import logging
from http import HTTPStatus

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from app.errors import (
    ArtifactError,
    BodyTimeout,
    Conflict,
    DeadlineExceeded,
    ErrorDetail,
    FusionrankError,
    InvalidRequest,
    NotFound,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    PolicyError,
    Unauthorized,
    UnsupportedMediaType,
)

__all__ = ["STATUS_BY_ERROR", "error_response", "install_error_handlers", "status_for"]

log = logging.getLogger("fusionrank.api")

# Most specific first: the first matching class wins.
STATUS_BY_ERROR: tuple[tuple[type[FusionrankError], HTTPStatus], ...] = (
    (PayloadTooLarge, HTTPStatus.REQUEST_ENTITY_TOO_LARGE),
    (UnsupportedMediaType, HTTPStatus.UNSUPPORTED_MEDIA_TYPE),
    (BodyTimeout, HTTPStatus.REQUEST_TIMEOUT),
    (InvalidRequest, HTTPStatus.UNPROCESSABLE_ENTITY),
    (NotFound, HTTPStatus.NOT_FOUND),
    (NotReady, HTTPStatus.SERVICE_UNAVAILABLE),
    (Overloaded, HTTPStatus.SERVICE_UNAVAILABLE),
    (DeadlineExceeded, HTTPStatus.GATEWAY_TIMEOUT),
    (Unauthorized, HTTPStatus.UNAUTHORIZED),
    (Conflict, HTTPStatus.CONFLICT),
    (PolicyError, HTTPStatus.UNPROCESSABLE_ENTITY),
    (ArtifactError, HTTPStatus.UNPROCESSABLE_ENTITY),
    (FusionrankError, HTTPStatus.INTERNAL_SERVER_ERROR),
)


# Headers the status needs: when to retry, and how to authenticate (RFC 9110).
_HEADERS: dict[HTTPStatus, dict[str, str]] = {
    HTTPStatus.SERVICE_UNAVAILABLE: {"Retry-After": "1"},
    HTTPStatus.UNAUTHORIZED: {"WWW-Authenticate": "Bearer"},
}


def status_for(error: FusionrankError) -> HTTPStatus:
    return next(status for kind, status in STATUS_BY_ERROR if isinstance(error, kind))


def error_response(
    status: HTTPStatus, code: str, message: str, details: list[ErrorDetail], headers: dict[str, str] | None = None
) -> Response:
    body = {"error": {"code": code, "message": message, "details": [d.to_dict() for d in details]}}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Route every error the service can raise through `STATUS_BY_ERROR`."""

    async def fusionrank_error(_: Request, exc: FusionrankError) -> Response:
        status = status_for(exc)
        headers = _HEADERS.get(status)
        if status >= 500:
            log.error("internal error: %s", exc.message)
        return error_response(status, exc.code, exc.message, exc.details, headers)

    async def request_validation(_: Request, exc: RequestValidationError) -> Response:
        details = [
            ErrorDetail(
                message=str(e.get("msg")),
                field=".".join(str(p) for p in e.get("loc", ())) or None,
                fix="correct this field (see /docs)",
            )
            for e in exc.errors()
        ]
        return error_response(
            HTTPStatus.UNPROCESSABLE_ENTITY, InvalidRequest.code, details[0].message if details else "invalid",
            details,
        )

    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        status = HTTPStatus(exc.status_code)
        if status == HTTPStatus.BAD_REQUEST:  # FastAPI: a declared JSON body that does not parse
            detail = ErrorDetail(message=str(exc.detail), field="body", fix="send a JSON object (see /docs)")
            return error_response(
                HTTPStatus.UNPROCESSABLE_ENTITY, InvalidRequest.code, f"body: {exc.detail}", [detail]
            )
        headers = dict(exc.headers) if exc.headers else None
        return error_response(status, status.name.lower(), str(exc.detail), [], headers)

    async def unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unexpected error")
        return error_response(
            HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "internal error; the request id is in the log", []
        )

    app.add_exception_handler(FusionrankError, fusionrank_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, request_validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, unexpected)
