"""Lean HTTP/1.1 load generators on one event loop, for the overload bench: closed and open loop.

Why not Python threads with httpx (bench/live.py `OpenLoop`): such a client spends about as much CPU per
request as the server, so at 2x the saturation on 2 shared cores it takes the CPU the server needs and its
latencies measure its own GIL queue. Why not `hey -q`: its workers tick in lockstep, so the "rate" arrives
as bursts of `-c` requests at once, and a burst larger than max_in_flight is shed even at 0.3x.

Here every connection is an `asyncio.Protocol` (uvloop's loop, which uvicorn[standard] installs) that
writes prepared request bytes and parses the answer as it arrives (status line, Content-Length): no
coroutine, task or timer per request. Open loop: request k is due at `start + k / rate` (evenly spaced,
wrk2-style constant throughput) and goes out on an idle keep-alive connection, or a new one up to
`connections`. Latency is timed from the actual send; how late sends were against their schedule (`lag`)
is reported, so a generator that could not keep up is visible instead of silently lowering the load.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import uvloop

__all__ = ["OpenLoopReport", "closed_loop", "open_loop"]

_IDLE_REUSE_S = 3.0  # uvicorn closes keep-alive connections idle for 5 s: never reuse one near that
T = TypeVar("T")


@dataclass
class OpenLoopReport:
    """What one open-loop run sent and got back."""

    rate: float
    seconds: float
    samples: list[tuple[float, float, int]] = field(default_factory=list)  # (due, seconds to answer, status)
    lags: list[float] = field(default_factory=list)  # seconds each send was late against its schedule
    errors: Counter[str] = field(default_factory=Counter)  # connections lost or refused, unanswered at the end
    unsent: int = 0  # due while all `connections` were busy

    def latencies(self, status: int) -> list[float]:
        return [seconds for _, seconds, code in self.samples if code == status]

    def statuses(self) -> dict[int | str, int]:
        counts: dict[int | str, int] = dict(Counter(code for _, _, code in self.samples))
        counts.update(self.errors)
        if self.unsent:
            counts["unsent"] = self.unsent
        return counts


class _Exchange(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight; `done(exchange, status)` per answer."""

    def __init__(self, request: bytes, done: Callable[[_Exchange, int], None], lost: Callable[[_Exchange], None]):
        self.request, self.done, self.lost = request, done, lost
        self.transport: Any = None  # uvloop's TCPTransport
        self.buffer = bytearray()
        self.status = 0
        self.expected = -1  # bytes of the whole answer once its head is parsed
        self.busy = False
        self.due = self.sent = self.idle_since = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def send(self, due: float) -> None:
        self.busy, self.due, self.sent = True, due, time.monotonic()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.expected < 0:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end])
            self.status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            self.expected = end + 4 + length
        if len(self.buffer) >= self.expected:
            del self.buffer[: self.expected]
            self.expected, self.busy, self.idle_since = -1, False, time.monotonic()
            self.done(self, self.status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.lost(self)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _post(host: str, port: int, path: str, body: bytes) -> bytes:
    if host != "127.0.0.1":
        raise SystemExit(f"load generators target 127.0.0.1 only, not {host}")
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def _run(main: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def closed_loop(
    host: str, port: int, path: str, body: bytes, *, clients: int, seconds: float, max_requests: int = 1_000_000,
) -> float:
    """Answers 200 per second with `clients` connections sending back to back (bounded in time and count)."""
    request = _post(host, port, path, body)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        finished = loop.create_future()
        stop = time.monotonic() + seconds
        answered, sent, open_clients = 0, 0, clients

        def done(exchange: _Exchange, status: int) -> None:
            nonlocal answered, sent
            answered += status == 200
            if time.monotonic() < stop and sent < max_requests:
                sent += 1
                exchange.send(time.monotonic())
            else:
                exchange.close()

        def lost(exchange: _Exchange) -> None:
            nonlocal open_clients
            open_clients -= 1
            if open_clients == 0 and not finished.done():
                finished.set_result(None)

        t0 = time.monotonic()
        for _ in range(clients):
            _, exchange = await loop.create_connection(lambda: _Exchange(request, done, lost), host, port)
            sent += 1
            exchange.send(time.monotonic())
        await asyncio.wait_for(finished, seconds + 60)
        return answered / (time.monotonic() - t0)

    return _run(main())


def open_loop(
    host: str, port: int, path: str, body: bytes, *, rate: float, seconds: float, connections: int,
    timeout_s: float = 30.0,
) -> OpenLoopReport:
    """POST `body` (JSON) to `path` at `rate` requests/s for `seconds`: at most rate x seconds requests."""
    request = _post(host, port, path, body)
    report = OpenLoopReport(rate, seconds)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        idle: list[_Exchange] = []  # a stack: the most recently used connection first
        live: set[_Exchange] = set()
        connecting = 0
        closing = False  # set once the run is over: closing a connection is then not an error
        start = time.monotonic() + 0.05

        def done(exchange: _Exchange, status: int) -> None:
            report.samples.append((exchange.due - start, time.monotonic() - exchange.sent, status))
            idle.append(exchange)

        def lost(exchange: _Exchange) -> None:
            live.discard(exchange)
            if exchange.busy and not closing:
                report.errors["connection lost"] += 1

        async def connect_and_send(due: float) -> None:
            nonlocal connecting
            try:
                _, exchange = await loop.create_connection(lambda: _Exchange(request, done, lost), host, port)
            except OSError as exc:
                report.errors[type(exc).__name__] += 1
                return
            finally:
                connecting -= 1
            live.add(exchange)
            report.lags.append(time.monotonic() - due)
            exchange.send(due)

        pending: set[asyncio.Task[None]] = set()
        for k in range(int(rate * seconds)):
            due = start + k / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))  # yields even when behind: answers get read
            exchange = None
            while idle and exchange is None:
                candidate = idle.pop()
                if candidate.transport is not None and time.monotonic() - candidate.idle_since < _IDLE_REUSE_S:
                    exchange = candidate
                else:
                    candidate.close()
            if exchange is not None:
                report.lags.append(time.monotonic() - due)
                exchange.send(due)
            elif len(live) + connecting < connections:
                connecting += 1
                task = asyncio.create_task(connect_and_send(due))
                pending.add(task)
                task.add_done_callback(pending.discard)
            else:
                report.unsent += 1
        end = time.monotonic() + timeout_s
        while (pending or any(e.busy for e in live)) and time.monotonic() < end:
            await asyncio.sleep(0.01)
        unanswered = sum(e.busy for e in live)
        if unanswered:
            report.errors["unanswered"] = unanswered
        closing = True
        for exchange in list(live):
            exchange.close()

    _run(main())
    return report
