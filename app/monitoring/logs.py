"""The service's log lines: one format for the app, uvicorn and the audit trail, and the request id on each.

Format (`FUSIONRANK_LOG_FORMAT`): `json` writes one JSON object per line (python-json-logger's orjson
formatter): `time` (UTC, ISO 8601), `level`, `logger`, `message`, `request_id` (when a request is being
handled), any structured fields the record carries (an audit record's, an access line's) and `exc_info`
for a traceback. `text` writes `time level logger [request_id] message key=value...` for a terminal.
`auto` (the default): text when stderr is a terminal, JSON otherwise (a container, a pipe, a file).

The request id lives in a context variable set by `app.api.middleware.RequestContextMiddleware` for the
whole request (the task handling it, and the worker thread it scores on): the formatters read it, so
every line a request produces carries it, uvicorn's own included.
"""

from __future__ import annotations

import logging
import sys
import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Literal

from pythonjsonlogger.orjson import OrjsonFormatter

if TYPE_CHECKING:
    from app.serving.answer import Answer

__all__ = [
    "LogFormat",
    "RequestContext",
    "StructuredJsonFormatter",
    "TextFormatter",
    "configure_logging",
    "current_request",
    "current_request_id",
    "formatter_for",
    "note_answer",
    "resolve_format",
    "set_request",
    "uvicorn_log_config",
]

LogFormat = Literal["auto", "json", "text"]


class RequestContext:
    """What one request's log lines share: its id, and what the access log reports (sampled requests only:
    `access` is False otherwise, and the scoring path does not fill `fields`)."""

    __slots__ = ("access", "fields", "request_id")

    def __init__(self, request_id: str, access: bool = False) -> None:
        self.request_id = request_id
        self.access = access
        self.fields: dict[str, Any] = {}  # candidates, versions, arm (set by `note_answer`)


_request: ContextVar[RequestContext | None] = ContextVar("fusionrank_request", default=None)


def set_request(context: RequestContext) -> None:
    """Make `context` the current request's, for the rest of the task (and threads it hands work to).

    Never reset: uvicorn runs each request in a task of its own, so the value dies with the task, and
    the 500 handler (outside the middleware) and uvicorn's "Exception in ASGI application" still see it.
    """
    _request.set(context)


def current_request() -> RequestContext | None:
    return _request.get()


def current_request_id() -> str | None:
    context = _request.get()
    return context.request_id if context is not None else None


# A LogRecord's own attributes; whatever else a record carries came from `extra=` and is a structured field.
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class StructuredJsonFormatter(OrjsonFormatter):
    """One JSON object per line: time, level, logger, message, request_id, the record's extra fields."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", "{asctime}{levelname}{name}{message}")
        kwargs.setdefault("style", "{")
        kwargs.setdefault("rename_fields", {"asctime": "time", "levelname": "level", "name": "logger"})
        kwargs.setdefault("datefmt", "%Y-%m-%dT%H:%M:%S")
        super().__init__(*args, **kwargs)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        # UTC with milliseconds: 2026-12-06T05:59:01.123Z
        return time.strftime(datefmt or "%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + (
            f".{int(record.msecs):03d}Z"
        )

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        request_id = getattr(record, "request_id", None) or current_request_id()
        if request_id is not None:
            log_data["request_id"] = request_id
        log_data.pop("color_message", None)  # uvicorn's copy of the message with ANSI colours


class TextFormatter(logging.Formatter):
    """`time level logger [request_id] message key=value...`: the same fields, for a person at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None) or current_request_id()
        extras = {k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRIBUTES and k != "color_message"}
        head, sep, tail = line.partition("\n")  # keep a traceback below the first line
        if request_id is not None:
            name_end = head.find(record.name) + len(record.name)
            head = f"{head[:name_end]} [{request_id}]{head[name_end:]}"
        if extras:
            head += " " + " ".join(f"{k}={v}" for k, v in extras.items() if k != "request_id")
        return head + sep + tail


def resolve_format(setting: LogFormat) -> Literal["json", "text"]:
    """`auto`: text on a terminal, JSON everywhere else."""
    if setting == "auto":
        return "text" if sys.stderr.isatty() else "json"
    return setting


def formatter_for(setting: LogFormat) -> logging.Formatter:
    return TextFormatter() if resolve_format(setting) == "text" else StructuredJsonFormatter()


def configure_logging(level: str, log_format: LogFormat) -> None:
    """Give fusionrank's loggers (audit and access included) a stderr handler in the chosen format, unless
    the root logger or fusionrank's already has one (uvicorn's `log_config`, a test's, an embedding app's)."""
    logger = logging.getLogger("fusionrank")
    logger.setLevel(level.upper())
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(formatter_for(log_format))
        logger.addHandler(handler)


def uvicorn_log_config(level: str, log_format: LogFormat) -> dict[str, Any]:
    """`logging.config.dictConfig` for `uvicorn.run(log_config=...)`: uvicorn's loggers and fusionrank's
    through one stderr handler in one format (uvicorn's access log stays off: fusionrank writes its own)."""
    kind = resolve_format(log_format)
    formatter: dict[str, Any] = {"()": f"{__name__}.{'TextFormatter' if kind == 'text' else 'StructuredJsonFormatter'}"}
    handler = {"class": "logging.StreamHandler", "formatter": "fusionrank", "stream": "ext://sys.stderr"}
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"fusionrank": formatter},
        "handlers": {"stderr": handler},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "fusionrank": {"handlers": ["stderr"], "level": level, "propagate": False},
        },
    }


def note_answer(answer: Answer) -> None:
    """Hand a scored request's candidates, versions and arm to its access line (sampled requests only)."""
    context = _request.get()
    if context is None or not context.access:
        return
    context.fields.update(
        candidates=len(answer.request.candidates.ids), arm=answer.arm, **answer.outcome.binding.versions()
    )
