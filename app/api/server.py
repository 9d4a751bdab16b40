"""The HTTP server options of `fusionrank serve`: a bounded HTTP/1.1 protocol for uvicorn, and its log config.

uvicorn's httptools protocol (its default when httptools is installed) has no limit on the size of
a request's headers nor on the time a client may take to send them: llhttp hands a header to Python
only once it is complete, so a 64 MB header was accumulated whole (6.6 s, +48-63 MB of RSS, answered
200). `h11_max_incomplete_event_size` bounds only uvicorn's h11 protocol, and answers 400.
`BoundedHttpToolsProtocol` adds, per connection:

- **Header size.** Request line + headers past `max_header_bytes` (counted as the bytes arrive, at
  most one socket read late): 431 and the connection closed.
- **Header time.** Complete headers within `header_read_timeout_seconds` of the connection opening,
  or of the request's first byte: 408 (or a plain close before any byte) past it.
- **Shutdown.** On graceful shutdown a connection still uploading a request body is closed at once
  (its request cannot complete within a drain; its handler sees the client gone and ends), instead
  of holding the shutdown for its whole grace period.

Without httptools, the options fall back to uvicorn's h11 protocol with its incomplete-event limit.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from dataclasses import dataclass
from typing import Any

from app.monitoring.logs import uvicorn_log_config
from app.settings import Settings, get_settings

__all__ = ["HeaderLimits", "configure_header_limits", "server_options"]

log = logging.getLogger("fusionrank.http")


@dataclass(frozen=True, slots=True)
class HeaderLimits:
    """Per-request header limits of the protocol (0 seconds: no header timeout)."""

    max_header_bytes: int
    header_timeout_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> HeaderLimits:
        return cls(settings.max_header_bytes, settings.header_read_timeout_seconds)


# Set by `server_options` in the process that builds the server; a worker process spawned by uvicorn
# (workers > 1) reads its own from the environment at its first connection.
_limits: HeaderLimits | None = None


def configure_header_limits(limits: HeaderLimits) -> None:
    """Set the header limits of every connection accepted from now on in this process."""
    global _limits
    _limits = limits


def _current_limits() -> HeaderLimits:
    global _limits
    if _limits is None:
        _limits = HeaderLimits.from_settings(get_settings())
    return _limits


def server_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.Config` / `uvicorn.run` that bound what one connection may cost."""
    configure_header_limits(HeaderLimits.from_settings(settings))
    options: dict[str, Any] = {
        "timeout_graceful_shutdown": settings.shutdown_grace_seconds,
        # uvicorn's own lines (startup, errors) in the service's format, through one handler
        "log_config": uvicorn_log_config(settings.log_level, settings.log_format),
    }
    if importlib.util.find_spec("httptools") is not None:
        options["http"] = "app.api.server:BoundedHttpToolsProtocol"
    else:  # h11 bounds the headers itself (answering 400); no header timeout there
        options["http"] = "h11"
        options["h11_max_incomplete_event_size"] = settings.max_header_bytes
    return options


def __getattr__(name: str) -> Any:
    """`BoundedHttpToolsProtocol`, defined on first use: importing this module never imports httptools."""
    if name == "BoundedHttpToolsProtocol":
        protocol = _bounded_httptools_protocol()
        globals()[name] = protocol
        return protocol
    raise AttributeError(name)


def _bounded_httptools_protocol() -> type[asyncio.Protocol]:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol with a header size cap, a header timeout and upload-aware shutdown."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.header_limits = _current_limits()
            self.reading_headers = True  # the next bytes belong to a request line or headers
            self.header_bytes = 0  # bytes of the unfinished headers as read from the socket
            self.parsed_header_bytes = 0  # ... and as handed over by llhttp (the two overlap: kept apart)
            self.headers_too_large = False
            self.headers_completed = 0  # requests whose headers llhttp finished on this connection
            self.header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_header_timer()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            reading, completed = self.reading_headers, self.headers_completed
            super().data_received(data)
            # A read that began and ended inside unfinished headers belongs to them whole (llhttp keeps
            # a header until it is complete, so this is what the parser holds). A read in which some
            # headers completed also carried a body (maybe a whole request, after which `reading_headers`
            # is set again): its size says nothing about headers, which `on_header` counts as parsed.
            still_reading = (
                reading and self.reading_headers and self.headers_completed == completed
                and not self.transport.is_closing()
            )
            if still_reading and self._over(len(data), parsed=False):
                self._answer_and_close(431, "request headers too large")

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.reading_headers = True
            self.header_bytes = self.parsed_header_bytes = 0
            if self.header_timer is None:
                self._arm_header_timer()

        def on_url(self, url: bytes) -> None:
            if self._over(len(url), parsed=True):
                raise _HeadersTooLarge()  # stops llhttp; uvicorn answers via send_400_response
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            if self._over(len(name) + len(value) + 4, parsed=True):
                raise _HeadersTooLarge()
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self.reading_headers = False
            self.headers_completed += 1
            self._disarm_header_timer()
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self.reading_headers = True
            self.header_bytes = self.parsed_header_bytes = 0

        def shutdown(self) -> None:
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete and cycle.more_body:
                # Still uploading its body: it could not be answered within the drain anyway.
                log.info("shutdown: closing a connection still uploading a request body")
                self.transport.close()
                return
            super().shutdown()

        def send_400_response(self, msg: str) -> None:
            if self.headers_too_large:  # raised from a parser callback: llhttp reports it as a parse error
                self._answer_and_close(431, "request headers too large")
                return
            super().send_400_response(msg)

        def _over(self, size: int, *, parsed: bool) -> bool:
            """Count `size` more header bytes; True (once) when that passes the limit."""
            if self.headers_too_large:
                return False
            if parsed:
                self.parsed_header_bytes += size
                total = self.parsed_header_bytes
            else:
                self.header_bytes += size
                total = self.header_bytes
            if total <= self.header_limits.max_header_bytes:
                return False
            self.headers_too_large = True
            self.headers = []  # drop what was kept
            return True

        def _arm_header_timer(self) -> None:
            seconds = self.header_limits.header_timeout_seconds
            if seconds > 0:
                self.header_timer = self.loop.call_later(seconds, self._headers_late)

        def _disarm_header_timer(self) -> None:
            if self.header_timer is not None:
                self.header_timer.cancel()
                self.header_timer = None

        def _headers_late(self) -> None:
            self.header_timer = None
            if self.transport.is_closing() or not self.reading_headers:
                return
            if self.cycle is None or self.cycle.response_complete:
                if self.header_bytes or self.parsed_header_bytes:
                    self._answer_and_close(408, "request headers not received in time")
                else:  # an idle connection that never sent a request: nothing to answer
                    self.transport.close()

        def _answer_and_close(self, status: int, text: str) -> None:
            log.info("%s: answered %d and closed the connection (%d header bytes)", text, status,
                     max(self.header_bytes, self.parsed_header_bytes))
            body = text.encode("ascii")
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
                b"connection: close\r\n\r\n%s" % (status, _REASONS[status], len(body), body)
            )
            self.transport.close()

    return BoundedHttpToolsProtocol


class _HeadersTooLarge(Exception):
    """Raised from a parser callback to stop llhttp once the headers are past the limit."""


_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}
