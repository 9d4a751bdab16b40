"""Read a request body with a size limit, before any of it is parsed; and in time.

Two layers: `receive_body` reads a work request's body off the ASGI channel for the admission
middleware (size limit, read deadline and minimum rate, a callback per chunk for the memory budget);
`read_body` reads it inside a route (the admission middleware has already read a work
route's body and replays it as one message, so there it only checks the size again).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

import anyio
from fastapi import Request
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive

from app.errors import BodyTimeout, PayloadTooLarge

__all__ = ["MIN_RATE_GRACE_SECONDS", "BodyDeadline", "read_body", "receive_body"]

# A body may take this long before the minimum rate applies: the first bytes of a body usually come in
# the packet of the headers, but a connection's first round trips (TCP slow start) must not count.
MIN_RATE_GRACE_SECONDS = 1.0


async def read_body(request: Request, limit: int) -> bytes:
    """Bytes of a body of at most `limit` bytes, whatever its type (413 past it, without reading the rest)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


class BodyDeadline:
    """When a body being read is late: past `timeout_seconds` in all (0: never), or slower on average
    than `min_bytes_per_second` once `MIN_RATE_GRACE_SECONDS` have passed (0: no minimum rate)."""

    def __init__(self, timeout_seconds: float, min_bytes_per_second: int) -> None:
        self.timeout_seconds = timeout_seconds
        self.min_bytes_per_second = min_bytes_per_second

    def seconds_left(self, elapsed: float, received: int) -> float:
        """Seconds until the body is late, given `received` bytes after `elapsed` seconds (inf: never)."""
        left = self.timeout_seconds - elapsed if self.timeout_seconds > 0 else math.inf
        if self.min_bytes_per_second > 0:
            left = min(left, MIN_RATE_GRACE_SECONDS + received / self.min_bytes_per_second - elapsed)
        return left

    def late(self, elapsed: float, received: int) -> BodyTimeout:
        """The error for a body found late; its message says which limit and which setting."""
        if self._timeout_binds(received):
            message = f"the body did not arrive within {self.timeout_seconds:g} s ({received} bytes received)"
            fix = "send the body at once after the headers, or raise FUSIONRANK_BODY_READ_TIMEOUT_SECONDS"
        else:
            rate = received / elapsed if elapsed > 0 else 0.0
            message = (
                f"the body arrived at {rate:.0f} bytes/s, below the minimum of {self.min_bytes_per_second}"
                f" bytes/s ({received} bytes in {elapsed:.1f} s)"
            )
            fix = "send the body at once after the headers, or lower FUSIONRANK_BODY_MIN_BYTES_PER_SECOND"
        return BodyTimeout.at("body", message, fix)

    def reason(self, received: int) -> str:
        """Metric label of a late body: "timeout" (the whole body too late) or "too_slow" (rate)."""
        return "timeout" if self._timeout_binds(received) else "too_slow"

    def _timeout_binds(self, received: int) -> bool:
        """True when the overall timeout, not the minimum rate, is the limit that made `received` late."""
        if self.timeout_seconds <= 0:
            return False
        if self.min_bytes_per_second <= 0:
            return True
        return self.timeout_seconds <= MIN_RATE_GRACE_SECONDS + received / self.min_bytes_per_second


async def receive_body(
    receive: Receive, *, limit: int, deadline: BodyDeadline, on_chunk: Callable[[int], None] | None = None
) -> bytes:
    """The whole body of an HTTP request from its ASGI `receive`, or an error as soon as it is known.

    `PayloadTooLarge` past `limit` bytes; `BodyTimeout` when `deadline` finds it late; `ClientDisconnect`
    when the client went away. `on_chunk(n)` is called with each chunk's size before the chunk is kept
    and may raise to refuse it (the memory budget of chunked bodies).
    """
    chunks: list[bytes] = []
    size = 0
    start = time.perf_counter()
    more = True
    while more:
        left = deadline.seconds_left(time.perf_counter() - start, size)
        message = None
        if left > 0:
            message = await receive() if math.isinf(left) else await _receive_within(receive, left)
        if message is None:
            raise deadline.late(time.perf_counter() - start, size)
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _too_large(size, limit)
            if on_chunk is not None:
                on_chunk(len(chunk))
            chunks.append(chunk)
    return b"".join(chunks)


async def _receive_within(receive: Receive, seconds: float) -> Message | None:
    """`receive()`, or None if nothing came within `seconds`.

    A timer that cancels this task, not an anyio cancel scope: the message is usually there already,
    and a scope's bookkeeping cost ~4x the timer on every request (ASGI servers run on asyncio).
    """
    try:
        task = asyncio.current_task()
    except RuntimeError:  # not on asyncio (trio): the portable, costlier way
        task = None
    if task is None:
        with anyio.move_on_after(seconds):
            return await receive()
        return None
    fired = False

    def expire() -> None:
        nonlocal fired
        fired = True
        task.cancel()

    timer = asyncio.get_running_loop().call_later(seconds, expire)
    try:
        return await receive()
    except asyncio.CancelledError:
        if fired and task.uncancel() == 0:  # our timer's cancellation, and nobody else's: a late body
            return None
        raise
    finally:
        timer.cancel()


def _too_large(size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge.at(
        "body", f"{size} bytes is more than the limit of {limit}",
        "send fewer candidates per request, or raise FUSIONRANK_MAX_BODY_BYTES",
    )
