"""Admission control: bounded in-flight work and memory (load shedding), body deadlines, request deadlines.

A pure ASGI middleware in front of the work routes (`/v1/score`, `/v1/feedback`). Probes, metrics
and the admin API are never shed: an overloaded replica must still say so to Kubernetes and still
accept a rollback. For a work request, in order:

1. **Memory.** Its body's parse cost (`Content-Length` × the format's amplification,
   app/api/budget.py) is reserved against `memory_budget_bytes` before a byte of the body is read;
   a chunked body reserves as its bytes arrive. Past the budget: 503 + `Retry-After`, unparsed (413
   when the body alone costs more than the whole budget: it could never be admitted).
2. **Body.** The body is read here, in full, under a deadline (`body_read_timeout_seconds`) and a
   minimum rate (`body_min_bytes_per_second`): a late body is answered 408 and its connection
   closed. A client that goes away is counted under status 499 by the metrics middleware.
3. **Shedding.** Only then does it take one of `max_in_flight` slots (0: no limit); past it, 503 +
   `Retry-After` at once. A slow uploader therefore never holds a slot: it cannot starve scoring.
4. **Deadline.** A request's budget is the smaller of `request_deadline_seconds` (0: none) and the
   `X-Request-Deadline-Ms` header, counted from its arrival. Past it the request is answered 504 and
   its work abandoned: the handler is cancelled at its next await, and the scoring route checks
   `check_deadline` between its stages, so CPU work that has not started is never started.

The route then reads the body from a replay of it (one message), so routes are unchanged.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from http import HTTPStatus

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.body import BodyDeadline, receive_body
from app.api.budget import MemoryBudget, amplification, parse_cost
from app.api.errors import error_response, status_for
from app.errors import (
    BodyTimeout,
    DeadlineExceeded,
    ErrorDetail,
    FusionrankError,
    InvalidRequest,
    Overloaded,
    PayloadTooLarge,
)
from app.monitoring.metrics import ServiceMetrics

__all__ = ["DEADLINE_HEADER", "AdmissionControl", "AdmissionLedger", "AdmissionLimits", "check_deadline"]

log = logging.getLogger("fusionrank.admission")

DEADLINE_HEADER = "x-request-deadline-ms"
_DEADLINE_KEY = "fusionrank.deadline"  # scope key: perf_counter() time past which the work is abandoned
_WORK_ROUTES = frozenset({"/v1/score", "/v1/feedback"})
_CLOSE = {"Connection": "close"}  # an answer sent before the body was read whole: the rest is not read


@dataclass(slots=True)
class AdmissionLimits:
    """The limits in force; set from settings in lifespan (the middleware exists before settings are read)."""

    max_in_flight: int = 0
    deadline_seconds: float = 0.0
    retry_after_seconds: int = 1
    max_body_bytes: int = 16 * 1024 * 1024
    body_timeout_seconds: float = 0.0
    body_min_bytes_per_second: int = 0


@dataclass(eq=False)
class AdmissionLedger:
    """What admitted work holds now (requests in flight, bytes reserved), shared with `/readyz`.

    `shed_since` is when the replica last began turning every work request away: set by the first
    503 after a request was admitted, finished or gave back memory, cleared by the next of those. A
    replica whose `shed_since` is old has neither taken nor finished any work since: it cannot take work.
    """

    memory: MemoryBudget = field(default_factory=MemoryBudget)
    in_flight: int = 0
    shed_since: float | None = None

    def shedding_for(self) -> float:
        """Seconds the replica has turned every work request away (0.0: it is taking work, or holds
        nothing: then the next request will be taken, and a 503 from /readyz would only keep it away)."""
        if self.shed_since is None or (self.in_flight == 0 and self.memory.reserved_bytes == 0):
            return 0.0
        return time.monotonic() - self.shed_since

    def describe(self) -> dict[str, float | int]:
        """The numbers `/readyz` shows."""
        return {
            "in_flight": self.in_flight,
            "reserved_bytes": self.memory.reserved_bytes,
            "memory_budget_bytes": self.memory.budget_bytes,
            "shedding_seconds": round(self.shedding_for(), 3),
        }


def check_deadline(scope: Scope) -> None:
    """Raise `DeadlineExceeded` when this request's deadline has passed (call between stages of work)."""
    deadline = scope.get(_DEADLINE_KEY)
    if deadline is not None and time.perf_counter() > deadline:
        raise DeadlineExceeded("the request deadline passed before scoring finished; the work was abandoned")


class AdmissionControl:
    """Reserve memory, read the body in time, shed past `max_in_flight`, answer 504 past the deadline."""

    def __init__(
        self, app: ASGIApp, limits: AdmissionLimits, metrics: ServiceMetrics, ledger: AdmissionLedger | None = None
    ) -> None:
        self.app = app
        self.limits = limits
        self.metrics = metrics
        self.ledger = ledger or AdmissionLedger()
        memory = self.ledger.memory
        metrics.reserved_bytes.set_function(lambda: memory.reserved_bytes)  # read at scrape time
        for route in _WORK_ROUTES:  # series at 0 from the start: increase() then sees the first 503 or 504
            metrics.shed.labels(route)
            metrics.shed_memory.labels(route)
            metrics.deadline_exceeded.labels(route)
            for reason in ("timeout", "too_slow"):
                metrics.body_late.labels(route, reason)

    @property
    def in_flight(self) -> int:
        return self.ledger.in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in _WORK_ROUTES:
            await self.app(scope, receive, send)
            return
        try:
            budget = _budget(scope, self.limits.deadline_seconds)
        except InvalidRequest as exc:
            await self._refuse(scope, receive, send, exc)
            return
        if budget is not None:
            scope[_DEADLINE_KEY] = time.perf_counter() + budget
        if self._full():  # nothing read yet: the cheapest answer an overloaded replica can give
            await self._shed(scope, receive, send)
            return
        reservation = _Reservation(self.ledger)
        try:
            body = await self._admit_body(scope, receive, send, reservation)
            if body is None:
                return
            if self._full():
                await self._shed(scope, receive, send)
                return
            await self._run(scope, receive, send, body)
        finally:
            reservation.release()

    def _full(self) -> bool:
        return bool(self.limits.max_in_flight) and self.ledger.in_flight >= self.limits.max_in_flight

    async def _admit_body(
        self, scope: Scope, receive: Receive, send: Send, reservation: _Reservation
    ) -> bytes | None:
        """The body, read whole within the limits with its parse cost reserved; None once answered."""
        limits = self.limits
        content_type, declared = _content_headers(scope)
        factor = amplification(content_type)
        if declared is not None:
            if declared > limits.max_body_bytes:
                await self._refuse(scope, receive, send, _too_large(declared, limits.max_body_bytes), _CLOSE)
                return None
            refusal = reservation.reserve(parse_cost(declared, factor), declared)
            if refusal is not None:
                await self._refuse_memory(scope, receive, send, refusal)
                return None
        received = 0

        def on_chunk(size: int) -> None:
            nonlocal received
            received += size
            if declared is None:  # chunked: reserve as the bytes arrive
                refusal = reservation.reserve(parse_cost(received, factor) - reservation.held, received)
                if refusal is not None:
                    raise refusal

        deadline = BodyDeadline(limits.body_timeout_seconds, limits.body_min_bytes_per_second)
        try:
            return await receive_body(receive, limit=limits.max_body_bytes, deadline=deadline, on_chunk=on_chunk)
        except BodyTimeout as exc:
            self.metrics.body_late.labels(scope["path"], deadline.reason(received)).inc()
            log.info("%s: %s; answered 408 and closed the connection", scope["path"], exc.message)
            await self._refuse(scope, receive, send, exc, _CLOSE)
        except Overloaded as exc:
            await self._refuse_memory(scope, receive, send, exc)
        except PayloadTooLarge as exc:
            await self._refuse(scope, receive, send, exc, _CLOSE)
        return None

    async def _run(self, scope: Scope, receive: Receive, send: Send, body: bytes) -> None:
        """Run the route on the body read, holding a slot, under the request's deadline."""
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: only http.disconnect can come

        ledger = self.ledger
        ledger.in_flight += 1
        ledger.shed_since = None
        self.metrics.in_flight.set(ledger.in_flight)
        try:
            deadline = scope.get(_DEADLINE_KEY)
            if deadline is None:
                await self.app(scope, replay, send)
            else:
                await self._with_deadline(scope, replay, send, deadline - time.perf_counter())
        finally:
            ledger.in_flight -= 1
            ledger.shed_since = None
            self.metrics.in_flight.set(ledger.in_flight)

    async def _shed(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.metrics.shed.labels(scope["path"]).inc()
        retry = self.limits.retry_after_seconds
        error = Overloaded(
            f"{self.ledger.in_flight} requests are in flight, the limit of this replica"
            f" (fix: retry after {retry} s, or add replicas)"
        )
        await self._refuse(scope, receive, send, error)

    async def _refuse_memory(self, scope: Scope, receive: Receive, send: Send, error: FusionrankError) -> None:
        if isinstance(error, Overloaded):
            self.metrics.shed_memory.labels(scope["path"]).inc()
        await self._refuse(scope, receive, send, error, _CLOSE)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, error: FusionrankError, headers: dict[str, str] | None = None
    ) -> None:
        status = status_for(error)
        extra = dict(headers or {})
        if status == HTTPStatus.SERVICE_UNAVAILABLE:
            extra["Retry-After"] = str(self.limits.retry_after_seconds)
            if self.ledger.shed_since is None:
                self.ledger.shed_since = time.monotonic()
        response = error_response(status, error.code, error.message, error.details, extra or None)
        await response(scope, receive, send)

    async def _with_deadline(self, scope: Scope, receive: Receive, send: Send, budget: float) -> None:
        status: int | None = None

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            with anyio.CancelScope(shield=True):  # an answer being sent is sent whole, deadline or not
                await send(message)

        if budget > 0:
            with anyio.move_on_after(budget) as cancel_scope:
                await self.app(scope, receive, send_wrapper)
            late = cancel_scope.cancelled_caught
        else:  # the deadline passed while the body arrived: not even started
            late = True
        if status == HTTPStatus.GATEWAY_TIMEOUT:  # `check_deadline` stopped the route between stages
            self._timed_out(scope)
        elif late and status is None:
            self._timed_out(scope)
            error = DeadlineExceeded("no answer within the request's deadline; the work was abandoned")
            await error_response(HTTPStatus.GATEWAY_TIMEOUT, error.code, error.message, error.details)(
                scope, receive, send
            )

    def _timed_out(self, scope: Scope) -> None:
        self.metrics.deadline_exceeded.labels(scope["path"]).inc()


class _Reservation:
    """The bytes of the memory budget one request holds; given back once, when the request ends."""

    def __init__(self, ledger: AdmissionLedger) -> None:
        self.ledger = ledger
        self.memory = ledger.memory
        self.held = 0

    def reserve(self, cost: int, body_bytes: int) -> FusionrankError | None:
        """Reserve `cost` more bytes; the error to answer with when they do not fit (nothing reserved)."""
        if cost <= 0:
            return None
        total = self.held + cost
        if not self.memory.can_ever_fit(total):
            return PayloadTooLarge.at(
                "body",
                f"parsing {body_bytes} bytes of this format needs about {total} bytes of memory, more than"
                f" this replica's whole budget of {self.memory.budget_bytes}",
                "send fewer candidates per request (or Arrow, which costs less to parse),"
                " or raise FUSIONRANK_MEMORY_BUDGET_BYTES with the pod's memory limit",
            )
        if not self.memory.try_reserve(cost):
            return Overloaded(
                f"the bodies being parsed hold {self.memory.reserved_bytes} of this replica's memory budget of"
                f" {self.memory.budget_bytes} bytes; this one needs {total}"
                " (fix: retry after a moment, send fewer candidates per request, or add replicas)"
            )
        self.held = total
        return None

    def release(self) -> None:
        if self.held:
            self.memory.release(self.held)
            self.held = 0
            self.ledger.shed_since = None  # room again: the next request may fit


def _content_headers(scope: Scope) -> tuple[str | None, int | None]:
    """`Content-Type` and `Content-Length` (None when absent or not a number: a chunked body)."""
    content_type: str | None = None
    length: int | None = None
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            content_type = value.decode("latin-1")
        elif name == b"content-length" and value.isdigit():
            length = int(value)
    return content_type, length


def _too_large(size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge.at(
        "body", f"{size} bytes is more than the limit of {limit}",
        "send fewer candidates per request, or raise FUSIONRANK_MAX_BODY_BYTES",
    )


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
