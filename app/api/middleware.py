"""Count and time every HTTP request by route and status (a pure ASGI middleware, no body copies).

A client that closes its connection before the answer (mid-upload, typically) is not a server error:
it is counted under status 499 (nginx's "client closed request"), logged once at INFO, without a
traceback, and nothing is answered (nobody is listening).
"""

from __future__ import annotations

import logging
import time

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.monitoring.metrics import ServiceMetrics

__all__ = ["CLIENT_CLOSED_STATUS", "RequestMetricsMiddleware"]

log = logging.getLogger("fusionrank.http")

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
