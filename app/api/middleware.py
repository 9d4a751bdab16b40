"""Per-request ASGI middlewares (pure ASGI, no body copies): the request id and access log, and the metrics.

`RequestContextMiddleware` gives every HTTP request an id: its `X-Request-ID` header when it is a
plausible id (1-128 characters of `A-Za-z0-9._:/+=@-`), else a new random one (32 hex digits). The id
is echoed in the answer's `X-Request-ID`, carried by every log line the request produces
(`app.monitoring.logs`) and by every error body (`error.request_id`). A sampled share of requests
(`FUSIONRANK_ACCESS_LOG_SAMPLE_RATE`) gets an access line on logger `fusionrank.access`: method,
route, status, latency_ms, and for `/v1/score` candidates, the versions and the arm.

`RequestMetricsMiddleware` counts and times every HTTP request by route and status.

A client that closes its connection before the answer (mid-upload, typically) is not a server error:
it is counted under status 499 (nginx's "client closed request"), logged once at INFO, without a
traceback, and nothing is answered (nobody is listening).
"""

from __future__ import annotations

import itertools
import logging
import random
import re
import secrets
import time
from dataclasses import dataclass

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.monitoring.logs import RequestContext, current_request, set_request
from app.monitoring.metrics import ServiceMetrics

__all__ = ["CLIENT_CLOSED_STATUS", "AccessLog", "RequestContextMiddleware", "RequestMetricsMiddleware"]

log = logging.getLogger("fusionrank.http")
access_log = logging.getLogger("fusionrank.access")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
# A generated id: this process's random prefix and a counter (32 hex digits), unique across replicas
# and restarts, at a tenth of the cost of 16 fresh random bytes per request.
_ID_PREFIX = secrets.token_hex(8)
_ID_COUNTER = itertools.count(1)


@dataclass(slots=True)
class AccessLog:
    """The share of requests that get an access line (0: none, 1: all); set from the settings in lifespan."""

    sample_rate: float = 0.0


class RequestContextMiddleware:
    """Set the request's id (and whether it is sampled for the access log) for the rest of the request."""

    def __init__(self, app: ASGIApp, access: AccessLog) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")
                break
        if request_id is None or _REQUEST_ID.fullmatch(request_id) is None:
            request_id = f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFF_FFFF_FFFF_FFFF:016x}"
        rate = self.access.sample_rate
        sampled = rate > 0 and (rate >= 1 or random.random() < rate)  # noqa: S311 (sampling, not a secret)
        set_request(RequestContext(request_id, sampled))
        echo = (b"x-request-id", request_id.encode("latin-1"))
        status = 500
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echo]
            await send(message)

        if not sampled:
            await self.app(scope, receive, send_with_id)
            return
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._access_line(scope, status, time.perf_counter() - start)

    def _access_line(self, scope: Scope, status: int, seconds: float) -> None:
        context = current_request()
        route = getattr(scope.get("route"), "path", None) or scope["path"]
        method = scope.get("method", "?")
        fields = {"method": method, "route": route, "status": status, "latency_ms": round(seconds * 1000, 3)}
        if context is not None:
            fields.update(context.fields)
        access_log.info("%s %s %d %.1f ms", method, route, status, seconds * 1000, extra=fields)

CLIENT_CLOSED_STATUS = 499


class RequestMetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, routes: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes  # known paths; anything else is counted as "other" (bounded labels)
        for route in ("/v1/score", "/v1/feedback"):  # at 0 from the start (rate() sees the first one)
            if route in routes:
                metrics.client_closed.labels(route)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = path if path in self.routes else "other"
        status = 500
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except ClientDisconnect:
            status = CLIENT_CLOSED_STATUS
            route = self._route(scope, route)
            self.metrics.client_closed.labels(route).inc()
            log.info(
                "%s %s: the client closed the connection after %.2f s, before its request was read whole;"
                " nothing answered", scope.get("method", "?"), route, time.perf_counter() - start,
            )
        finally:
            route = self._route(scope, route)
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.request_latency.labels(route).observe(time.perf_counter() - start)

    def _route(self, scope: Scope, route: str) -> str:
        # A templated route (/admin/policies/{surface}/activate) is labelled by its template.
        template = getattr(scope.get("route"), "path", None)
        if route == "other" and template in self.routes:
            return str(template)
        return route
