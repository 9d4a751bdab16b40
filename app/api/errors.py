"""The one table from fusionrank errors to HTTP, and the one error body shape.

Body: {"error": {"code", "message", "details": [{"message", "field", "candidate_index", "fix"}], "request_id"}}
`request_id` is the request's id (`X-Request-ID`, app.api.middleware): every log line of the request
carries it too, so a 500's id finds its traceback. `document_errors` writes this shape, with an
example per error class of the table, into every error response of the OpenAPI description.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
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
from app.monitoring.logs import current_request_id

__all__ = [
    "STATUS_BY_ERROR", "ErrorBody", "document_errors", "error_response", "install_error_handlers", "status_for",
]

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
    error: dict[str, object] = {"code": code, "message": message, "details": [d.to_dict() for d in details]}
    request_id = current_request_id()
    if request_id is not None:
        error["request_id"] = request_id
    body = {"error": error}
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
        request_id = current_request_id() or "-"
        # Runs outside the request id middleware (Starlette's outermost layer): echo the id here.
        return error_response(
            HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error",
            f"internal error; look for request_id {request_id} in the service's log", [],
            {"X-Request-ID": request_id},
        )

    app.add_exception_handler(FusionrankError, fusionrank_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, request_validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, unexpected)


class ErrorDetailBody(BaseModel):
    """One problem of an error: where it is and how to fix it."""

    message: str
    field: str | None = Field(
        default=None, description="JSON path of the value at fault, e.g. candidates[3].features.price"
    )
    candidate_index: int | None = Field(default=None, description="the candidate at fault, when one is")
    fix: str | None = Field(default=None, description="what would fix it")


class ErrorInfo(BaseModel):
    code: str = Field(description="machine-readable error code (invalid_request, not_ready, overloaded...)")
    message: str
    details: list[ErrorDetailBody]
    request_id: str | None = Field(
        default=None, description="the request's id (X-Request-ID): every log line of the request carries it"
    )


class ErrorBody(BaseModel):
    """Every error answer of the service: `{"error": {...}}`."""

    error: ErrorInfo


_EXAMPLE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
_HEADER_DOCS: dict[str, dict[str, Any]] = {
    "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}},
    "WWW-Authenticate": {"description": "the scheme to authenticate with", "schema": {"type": "string"}},
}


def _examples(status: HTTPStatus) -> dict[str, Any]:
    """One example body per error class the table maps to `status` (the class's code and description)."""
    examples: dict[str, Any] = {}
    for kind, mapped in STATUS_BY_ERROR:
        if mapped == status and kind.code not in examples:
            message = (kind.__doc__ or kind.code).strip().splitlines()[0]
            details = []
            if status == HTTPStatus.UNPROCESSABLE_ENTITY:
                details = [{"message": "price is not a number", "field": "candidates[3].features.price",
                            "candidate_index": 3, "fix": "send a finite number"}]
            body = {"code": kind.code, "message": message, "details": details, "request_id": _EXAMPLE_ID}
            examples[kind.code] = {"summary": kind.__name__, "value": {"error": body}}
    if not examples:  # a status raised as HTTPException (405, 431...): its name is the code
        code = "internal_error" if status == HTTPStatus.INTERNAL_SERVER_ERROR else status.name.lower()
        body = {"code": code, "message": status.phrase, "details": [], "request_id": _EXAMPLE_ID}
        examples[code] = {"summary": status.phrase, "value": {"error": body}}
    return examples


def document_errors(schema: dict[str, Any]) -> None:
    """Give every error response (and a 500 on every operation) the `ErrorBody` schema and examples."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, sub in ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}").pop("$defs").items():
        components[name] = sub
    components["ErrorBody"] = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    components["ErrorBody"].pop("$defs", None)
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.setdefault("500", {})
            for code, response in responses.items():
                if not code.isdigit() or int(code) < 400:
                    continue
                status = HTTPStatus(int(code))
                response["description"] = _description(status, response.get("description"))
                response["content"] = {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"},
                                         "examples": _examples(status)}
                }
                headers = _HEADERS.get(status)
                if headers:
                    response["headers"] = {name: _HEADER_DOCS[name] for name in headers}
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)


def _description(status: HTTPStatus, given: str | None) -> str:
    if given and not given.startswith("error body") and given != "Validation Error":
        return given
    return f"{status.phrase}: the error envelope (`error.code` says which)"
