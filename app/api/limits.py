"""Admission control: bounded in-flight work (load shedding) and per-request deadlines.

A pure ASGI middleware in front of the work routes (`/v1/score`, `/v1/feedback`). Probes, metrics
and the admin API are never shed: an overloaded replica must still say so to Kubernetes and still
accept a rollback.

- **Shedding.** At most `max_in_flight` work requests run at once; one more is answered at once
  with 503, `Retry-After` and the one error shape, instead of queueing without bound. 0: no limit.
- **Deadline.** A request's budget is the smaller of `request_deadline_seconds` (0: none) and the
  `X-Request-Deadline-Ms` header. Past it the request is answered 504 and its work is abandoned:
  the handler is cancelled at its next await, and the scoring route checks `check_deadline`
  between its stages, so CPU work that has not started is never started.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from http import HTTPStatus

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import error_response
from app.errors import DeadlineExceeded, ErrorDetail, InvalidRequest, Overloaded
from app.monitoring.metrics import ServiceMetrics

__all__ = ["DEADLINE_HEADER", "AdmissionControl", "AdmissionLimits", "check_deadline"]

DEADLINE_HEADER = "x-request-deadline-ms"
_DEADLINE_KEY = "fusionrank.deadline"  # scope key: perf_counter() time past which the work is abandoned
_WORK_ROUTES = frozenset({"/v1/score", "/v1/feedback"})


@dataclass(slots=True)
class AdmissionLimits:
    """The limits in force; set from settings in lifespan (the middleware exists before settings are read)."""

    max_in_flight: int = 0
    deadline_seconds: float = 0.0
    retry_after_seconds: int = 1


def check_deadline(scope: Scope) -> None:
    """Raise `DeadlineExceeded` when this request's deadline has passed (call between stages of work)."""
    deadline = scope.get(_DEADLINE_KEY)
    if deadline is not None and time.perf_counter() > deadline:
        raise DeadlineExceeded("the request deadline passed before scoring finished; the work was abandoned")


class AdmissionControl:
    """Shed past `max_in_flight`; answer 504 past the deadline. Pure ASGI: no body copies."""

    def __init__(self, app: ASGIApp, limits: AdmissionLimits, metrics: ServiceMetrics) -> None:
        self.app = app
        self.limits = limits
        self.metrics = metrics
        self.in_flight = 0
        for route in _WORK_ROUTES:  # series at 0 from the start: increase() then sees the first 503 or 504
            metrics.shed.labels(route)
            metrics.deadline_exceeded.labels(route)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in _WORK_ROUTES:
            await self.app(scope, receive, send)
            return
        limits = self.limits
        if limits.max_in_flight and self.in_flight >= limits.max_in_flight:
            self.metrics.shed.labels(scope["path"]).inc()
            error = Overloaded(
                f"{self.in_flight} requests are in flight, the limit of this replica"
                f" (fix: retry after {limits.retry_after_seconds} s, or add replicas)"
            )
            response = error_response(
                HTTPStatus.SERVICE_UNAVAILABLE, error.code, error.message, error.details,
                {"Retry-After": str(limits.retry_after_seconds)},
            )
            await response(scope, receive, send)
            return
        try:
            budget = _budget(scope, limits.deadline_seconds)
        except InvalidRequest as exc:
            await error_response(HTTPStatus.UNPROCESSABLE_ENTITY, exc.code, exc.message, exc.details)(
                scope, receive, send
            )
            return
        self.in_flight += 1
        self.metrics.in_flight.set(self.in_flight)
        try:
            if budget is None:
                await self.app(scope, receive, send)
            else:
                await self._with_deadline(scope, receive, send, budget)
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.set(self.in_flight)

    async def _with_deadline(self, scope: Scope, receive: Receive, send: Send, budget: float) -> None:
        scope[_DEADLINE_KEY] = time.perf_counter() + budget
        status: int | None = None

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            with anyio.CancelScope(shield=True):  # an answer being sent is sent whole, deadline or not
                await send(message)

        with anyio.move_on_after(budget) as cancel_scope:
            await self.app(scope, receive, send_wrapper)
        if status == HTTPStatus.GATEWAY_TIMEOUT:  # `check_deadline` stopped the route between stages
            self._timed_out(scope)
        elif cancel_scope.cancelled_caught and status is None:
            self._timed_out(scope)
            error = DeadlineExceeded(f"no answer within the deadline of {budget * 1000:.0f} ms; the work was abandoned")
            await error_response(HTTPStatus.GATEWAY_TIMEOUT, error.code, error.message, error.details)(
                scope, receive, send
            )

    def _timed_out(self, scope: Scope) -> None:
        self.metrics.deadline_exceeded.labels(scope["path"]).inc()


def _budget(scope: Scope, configured: float) -> float | None:
    """Seconds this request may take: the smaller of the setting and the header; None: no deadline."""
    budget = configured if configured > 0 else math.inf
    for name, value in scope.get("headers", ()):
        if name == DEADLINE_HEADER.encode("latin-1"):
            text = value.decode("latin-1").strip()
            if not text.isdigit() or not 0 < int(text) <= 3_600_000:
                raise InvalidRequest(
                    f"{DEADLINE_HEADER}: {text[:32]!r} is not a deadline",
                    details=[ErrorDetail(
                        message="expected whole milliseconds between 1 and 3600000", field=f"header.{DEADLINE_HEADER}",
                        fix="send the remaining time budget of the caller in milliseconds, e.g. 150",
                    )],
                )
            budget = min(budget, int(text) / 1000)
    return None if math.isinf(budget) else budget
