"""Admission (app/api/limits.py): the memory budget, body deadlines, client aborts and /readyz.

ASGI-level and deterministic: the middleware wraps a work route the test holds, and bodies arrive
from a scripted `receive`. The same behaviours against a real server are in
tests/reliability/test_slow_clients.py.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from app.api.budget import PARSE_AMPLIFICATION, MemoryBudget, amplification, parse_cost
from app.api.limits import AdmissionControl, AdmissionLedger, AdmissionLimits
from app.api.middleware import RequestMetricsMiddleware
from app.monitoring.metrics import ServiceMetrics

JSON_FACTOR = PARSE_AMPLIFICATION["application/json"]


class HeldWork:
    """A work route that reads its body, then answers 200 with the body's size when released."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.release.set()
        self.started = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.started += 1
        size, more = 0, True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(size).encode()})


class Wire:
    """One request on a scripted connection: its answer, and how many body messages were read."""

    def __init__(self, messages: list[Message | None], headers: dict[str, str]) -> None:
        self.messages = messages  # None: the client sends nothing more (waits forever)
        self.reads = 0
        self.sent: list[Message] = []
        self.scope: Scope = {
            "type": "http", "method": "POST", "path": "/v1/score", "query_string": b"",
            "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        }

    async def receive(self) -> Message:
        if self.reads >= len(self.messages) or self.messages[self.reads] is None:
            await anyio.sleep_forever()
        message = self.messages[self.reads]
        self.reads += 1
        assert message is not None
        return message

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int | None:
        return next((m["status"] for m in self.sent if m["type"] == "http.response.start"), None)

    @property
    def headers(self) -> dict[str, str]:
        start = next(m for m in self.sent if m["type"] == "http.response.start")
        return {k.decode(): v.decode() for k, v in start["headers"]}

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


def _chunk(data: bytes, more: bool) -> Message:
    return {"type": "http.request", "body": data, "more_body": more}


def test_parse_cost_by_media_type() -> None:
    assert amplification("application/json; charset=utf-8") == JSON_FACTOR
    assert amplification(None) == JSON_FACTOR
    assert amplification("application/vnd.apache.arrow.stream") == PARSE_AMPLIFICATION[
        "application/vnd.apache.arrow.stream"] < JSON_FACTOR
    assert amplification("text/evil") == max(PARSE_AMPLIFICATION.values())  # unknown: the costliest
    assert parse_cost(1000, 2.5) == 2500
    budget = MemoryBudget(100)
    assert budget.try_reserve(60) and not budget.try_reserve(41) and budget.reserved_bytes == 60
    budget.release(60)
    assert budget.reserved_bytes == 0 and not budget.can_ever_fit(101)


def test_a_declared_body_past_the_budget_is_shed_before_a_byte_is_read() -> None:
    async def main() -> None:
        body = b"x" * 1000
        cost = parse_cost(len(body), JSON_FACTOR)
        metrics = ServiceMetrics()
        ledger = AdmissionLedger(memory=MemoryBudget(int(cost * 1.5)))
        work = HeldWork()
        work.release = anyio.Event()
        app = AdmissionControl(work, AdmissionLimits(), metrics, ledger)
        headers = {"content-type": "application/json", "content-length": str(len(body))}
        first = Wire([_chunk(body, False)], headers)
        async with anyio.create_task_group() as tg:
            tg.start_soon(app, first.scope, first.receive, first.send)
            with anyio.fail_after(5):
                while work.started == 0:
                    await anyio.sleep(0.001)
            assert ledger.memory.reserved_bytes == cost
            second = Wire([_chunk(body, False)], headers)
            t0 = time.perf_counter()
            await app(second.scope, second.receive, second.send)
            assert time.perf_counter() - t0 < 0.1
            assert second.status == 503 and second.reads == 0  # answered on its headers alone
            assert second.headers["retry-after"] == "1" and second.headers["connection"] == "close"
            assert orjson.loads(second.body)["error"]["code"] == "overloaded"
            assert metrics.shed_memory.labels("/v1/score")._value.get() == 1
            work.release.set()
        assert first.status == 200 and ledger.memory.reserved_bytes == 0
        third = Wire([_chunk(body, False)], headers)  # the budget is free again
        await app(third.scope, third.receive, third.send)
        assert third.status == 200 and third.body == b"1000"

    anyio.run(main)


def test_a_body_costing_more_than_the_whole_budget_is_413_naming_the_setting() -> None:
    async def main() -> None:
        ledger = AdmissionLedger(memory=MemoryBudget(10_000))
        app = AdmissionControl(HeldWork(), AdmissionLimits(), ServiceMetrics(), ledger)
        wire = Wire([_chunk(b"x" * 1000, False)], {"content-length": "1000"})
        await app(wire.scope, wire.receive, wire.send)
        assert wire.status == 413 and wire.reads == 0
        assert "FUSIONRANK_MEMORY_BUDGET_BYTES" in orjson.loads(wire.body)["error"]["details"][0]["fix"]

    anyio.run(main)


def test_a_chunked_body_reserves_as_it_arrives_and_gives_it_back() -> None:
    async def main() -> None:
        chunk = b"x" * 1000
        ledger = AdmissionLedger(memory=MemoryBudget(parse_cost(2500, JSON_FACTOR)))
        app = AdmissionControl(HeldWork(), AdmissionLimits(), ServiceMetrics(), ledger)
        fits = Wire([_chunk(chunk, True), _chunk(chunk, False)], {})
        await app(fits.scope, fits.receive, fits.send)
        assert fits.status == 200 and fits.body == b"2000"
        too_much = Wire([_chunk(chunk, True), _chunk(chunk, True), _chunk(chunk, False)], {})
        await app(too_much.scope, too_much.receive, too_much.send)
        assert too_much.status == 413 and too_much.reads == 3  # past the whole budget: can never fit
        assert ledger.memory.reserved_bytes == 0

    anyio.run(main)


@pytest.mark.parametrize(
    ("limits", "reason", "setting"),
    [
        (AdmissionLimits(body_timeout_seconds=0.3), "timeout", "FUSIONRANK_BODY_READ_TIMEOUT_SECONDS"),
        (AdmissionLimits(body_timeout_seconds=30, body_min_bytes_per_second=1_000_000), "too_slow",
         "FUSIONRANK_BODY_MIN_BYTES_PER_SECOND"),
    ],
)
def test_a_late_body_is_408_and_holds_no_slot(limits: AdmissionLimits, reason: str, setting: str) -> None:
    async def main() -> None:
        metrics = ServiceMetrics()
        limits.max_in_flight = 1
        app = AdmissionControl(HeldWork(), limits, metrics)
        stalled = Wire([_chunk(b"[", True), None], {"content-length": "100"})
        async with anyio.create_task_group() as tg:
            t0 = time.perf_counter()
            tg.start_soon(app, stalled.scope, stalled.receive, stalled.send)
            await anyio.sleep(0.05)
            other = Wire([_chunk(b"{}", False)], {"content-length": "2"})  # scored while the other uploads
            await app(other.scope, other.receive, other.send)
            assert other.status == 200 and app.in_flight == 0
        seconds = time.perf_counter() - t0
        assert stalled.status == 408 and stalled.headers["connection"] == "close"
        error = orjson.loads(stalled.body)["error"]
        assert error["code"] == "body_timeout" and setting in error["details"][0]["fix"]
        assert seconds < 1.5  # min rate: after the 1 s grace; timeout: after 0.3 s
        assert metrics.body_late.labels("/v1/score", reason)._value.get() == 1

    anyio.run(main)


def test_a_client_gone_mid_upload_is_499_one_info_line_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        metrics = ServiceMetrics()
        ledger = AdmissionLedger(memory=MemoryBudget(10**9))
        routes = frozenset({"/v1/score"})
        admission = AdmissionControl(HeldWork(), AdmissionLimits(), metrics, ledger)
        app = RequestMetricsMiddleware(admission, metrics, routes)
        wire = Wire([_chunk(b"[", True), {"type": "http.disconnect"}], {"content-length": "100"})
        await app(wire.scope, wire.receive, wire.send)  # no exception escapes to the server
        assert wire.sent == []  # nobody to answer
        assert metrics.requests.labels("/v1/score", "499")._value.get() == 1
        assert metrics.requests.labels("/v1/score", "500")._value.get() == 0
        assert metrics.client_closed.labels("/v1/score")._value.get() == 1
        assert ledger.memory.reserved_bytes == 0

    with caplog.at_level(logging.INFO):
        anyio.run(main)
    lines = [r for r in caplog.records if "client closed" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO and lines[0].exc_info is None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_readyz_says_saturated_when_the_replica_takes_no_work(
    client_factory: Callable[..., TestClient], sample_request: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One request holds the only slot (scoring on a thread that waits); every other one is shed. Past
    `ready_saturated_seconds` of that, /readyz answers 503 "saturated"; once work finishes, 200 again."""
    import app.api.score as score_module

    gate = threading.Event()
    real_answer = score_module._answer

    def held_answer(*args: Any, **kwargs: Any) -> bytes:
        gate.wait(10)
        return real_answer(*args, **kwargs)

    monkeypatch.setattr(score_module, "_answer", held_answer)
    test_client = client_factory(max_in_flight=1, score_in_thread=True, ready_saturated_seconds=0.2)
    body = orjson.dumps(sample_request)
    json_head = {"content-type": "application/json"}

    async def main() -> None:
        transport = httpx.ASGITransport(app=test_client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fusionrank") as client:
            async def held() -> None:
                assert (await client.post("/v1/score", content=body, headers=json_head)).status_code == 200

            async with anyio.create_task_group() as tg:
                tg.start_soon(held)  # holds the only slot until the gate opens
                with anyio.fail_after(5):
                    while (await client.get("/readyz")).json()["admission"]["in_flight"] == 0:
                        await anyio.sleep(0.01)
                assert (await client.post("/v1/score", content=body, headers=json_head)).status_code == 503
                assert (await client.get("/readyz")).status_code == 200  # shedding, but only just
                await anyio.sleep(0.3)
                assert (await client.post("/v1/score", content=body, headers=json_head)).status_code == 503
                ready = await client.get("/readyz")
                assert ready.status_code == 503 and ready.json()["status"] == "saturated"
                await anyio.to_thread.run_sync(gate.set)
            after = await client.get("/readyz")
            assert after.status_code == 200 and after.json()["status"] == "ready"
            assert after.json()["admission"]["reserved_bytes"] == 0

    anyio.run(main)


def test_the_body_timer_never_swallows_someone_elses_cancellation() -> None:
    """The body deadline cancels the reading task with a timer: an outer cancellation (a deadline scope,
    shutdown) must still cancel, and a timer that fired must leave no pending cancellation behind."""
    from app.api.body import BodyDeadline, receive_body

    async def main() -> None:
        forever = Wire([None], {})
        with anyio.move_on_after(0.05) as outer:
            await receive_body(forever.receive, limit=100, deadline=BodyDeadline(30, 0))
        assert outer.cancelled_caught
        late = Wire([None], {})
        with pytest.raises(Exception, match="did not arrive within"):
            await receive_body(late.receive, limit=100, deadline=BodyDeadline(0.05, 0))
        await anyio.sleep(0.01)  # not cancelled by a leftover request
        current = asyncio.current_task()
        assert current is not None and current.cancelling() == 0

    anyio.run(main)


def test_saturation_ends_when_the_work_holding_the_replica_ends() -> None:
    """A replica that sheds only while something holds it: once that is given back (even with no new
    request to clear it) /readyz must not keep it out of the load balancer."""
    ledger = AdmissionLedger(memory=MemoryBudget(100))
    ledger.in_flight = 1
    ledger.shed_since = time.monotonic() - 10
    assert ledger.shedding_for() >= 10
    ledger.in_flight = 0
    assert ledger.shedding_for() == 0.0
