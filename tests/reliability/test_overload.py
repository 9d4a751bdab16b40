"""Load shedding and deadlines (app/api/limits.py).

Deterministic: the admission middleware wraps a work route whose requests finish only when the test
releases them, so "saturated" is exact. At twice the capacity the extra half is answered 503 with
Retry-After at once, the accepted half is served, and once the load drops new requests are accepted
again. The wiring through the real app is checked with a body that streams slowly.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from starlette.types import Receive, Scope, Send

from app.api.limits import AdmissionControl, AdmissionLimits
from app.monitoring.metrics import ServiceMetrics

CAPACITY = 8
JSON = {"content-type": "application/json"}


class HeldWork:
    """An ASGI work route that answers 200 when released (or after `seconds`)."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.started = 0
        self.finished = 0
        self.cancelled = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.started += 1
        try:
            await self.release.wait()
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        self.finished += 1
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fusionrank")


def test_twice_the_capacity_sheds_the_excess_at_once_and_recovers() -> None:
    async def main() -> None:
        work = HeldWork()
        metrics = ServiceMetrics()
        app = AdmissionControl(work, AdmissionLimits(max_in_flight=CAPACITY), metrics)
        answers: list[tuple[int, float, httpx.Headers, bytes]] = []
        async with _client(app) as client:

            async def one() -> None:
                t0 = time.perf_counter()
                r = await client.post("/v1/score", content=b"{}")
                answers.append((r.status_code, time.perf_counter() - t0, r.headers, r.content))

            async with anyio.create_task_group() as tg:
                for _ in range(2 * CAPACITY):
                    tg.start_soon(one)
                with anyio.fail_after(5):
                    while len(answers) < CAPACITY:  # the shed half answers while the rest is held
                        await anyio.sleep(0.001)
                assert work.started == CAPACITY
                work.release.set()
            shed = [a for a in answers if a[0] == 503]
            assert len(shed) == CAPACITY and sum(a[0] == 200 for a in answers) == CAPACITY
            for _, _seconds, headers, body in shed:
                assert headers["retry-after"] == "1"
                assert orjson.loads(body)["error"]["code"] == "overloaded"
            assert metrics.shed.labels("/v1/score")._value.get() == CAPACITY
            # Load dropped: a new wave within capacity is accepted in full.
            work.release = anyio.Event()
            work.release.set()
            again = [await client.post("/v1/score", content=b"{}") for _ in range(CAPACITY)]
            assert [r.status_code for r in again] == [200] * CAPACITY
            # Probes are never shed, whatever is in flight.
            held = HeldWork()
            app.app = held
            async with anyio.create_task_group() as tg:
                for _ in range(CAPACITY):
                    tg.start_soon(client.post, "/v1/score")
                with anyio.fail_after(5):
                    while held.started < CAPACITY:
                        await anyio.sleep(0.001)
                assert app.in_flight == CAPACITY
                assert (await client.post("/v1/score")).status_code == 503
                tg.start_soon(client.get, "/healthz")
                with anyio.fail_after(5):  # passed through to the route, not shed
                    while held.started < CAPACITY + 1:
                        await anyio.sleep(0.001)
                held.release.set()
            assert app.in_flight == 0

    anyio.run(main)


def test_deadline_answers_504_and_abandons_the_work() -> None:
    async def main() -> None:
        work = HeldWork()
        metrics = ServiceMetrics()
        app = AdmissionControl(work, AdmissionLimits(deadline_seconds=5.0), metrics)
        async with _client(app) as client:
            t0 = time.perf_counter()
            r = await client.post("/v1/score", headers={"x-request-deadline-ms": "50"})
            elapsed = time.perf_counter() - t0
            assert r.status_code == 504 and elapsed < 1.0
            assert r.json()["error"]["code"] == "deadline_exceeded"
            assert work.cancelled == 1 and work.finished == 0
            bad = await client.post("/v1/score", headers={"x-request-deadline-ms": "soon"})
            assert bad.status_code == 422
            assert bad.json()["error"]["details"][0]["field"] == "header.x-request-deadline-ms"
            app.limits.deadline_seconds = 0.05  # the setting alone
            assert (await client.post("/v1/feedback")).status_code == 504
            assert metrics.deadline_exceeded.labels("/v1/feedback")._value.get() == 1

    anyio.run(main)


def test_real_app_a_slow_uploader_holds_no_slot(
    client_factory: Callable[..., TestClient], sample_request: dict[str, Any]
) -> None:
    """Wiring: settings -> middleware; a request still uploading its body holds no in-flight slot, so
    with max_in_flight=1 another request is scored meanwhile, and the uploader is scored once complete."""
    test_client = client_factory(max_in_flight=1)
    app = test_client.app
    body = orjson.dumps(sample_request)

    async def main() -> None:
        gate = anyio.Event()

        async def slow_body() -> AsyncIterator[bytes]:
            yield body[:10]
            await gate.wait()
            yield body[10:]

        async with _client(app) as client:
            async with anyio.create_task_group() as tg:
                results: list[int] = []

                async def slow() -> None:
                    r = await client.post("/v1/score", content=slow_body(), headers=JSON)
                    results.append(r.status_code)

                tg.start_soon(slow)
                await anyio.sleep(0.2)
                meanwhile = await client.post("/v1/score", content=body, headers=JSON)
                assert meanwhile.status_code == 200
                ready = await client.get("/readyz")
                assert ready.status_code == 200 and ready.json()["admission"]["in_flight"] == 0
                gate.set()
            assert results == [200]

    anyio.run(main)


def test_a_request_past_its_deadline_is_never_scored(
    client_factory: Callable[..., TestClient], sample_request: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decoding took longer than the budget: the route answers 504 and the model is never run."""
    import app.api.score as score_module

    answer_module = importlib.import_module("app.serving.answer")  # the data plane that calls score()
    real_decode, real_score = score_module.decode_score, answer_module.score_request
    scored: list[int] = []

    def slow_decode(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.05)  # blocking, as CPU-bound decoding is: no await for the middleware to cancel at
        return real_decode(*args, **kwargs)

    def counting_score(*args: Any, **kwargs: Any) -> Any:
        scored.append(1)
        return real_score(*args, **kwargs)

    monkeypatch.setattr(score_module, "decode_score", slow_decode)
    monkeypatch.setattr(answer_module, "score_request", counting_score)
    client = client_factory()
    late = client.post("/v1/score", json=sample_request, headers={"x-request-deadline-ms": "10"})
    assert late.status_code == 504 and late.json()["error"]["code"] == "deadline_exceeded"
    assert scored == []
    metrics = client.get("/metrics").text
    assert 'fusionrank_deadline_exceeded_total{route="/v1/score"} 1.0' in metrics
    on_time = client.post("/v1/score", json=sample_request, headers={"x-request-deadline-ms": "10000"})
    assert on_time.status_code == 200 and scored == [1]


def test_a_request_that_waited_in_line_past_its_deadline_is_not_even_decoded(
    client: TestClient, sample_request: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Handed its turn after its deadline (anyio no longer cancels a finished wait): 504 before decoding."""
    import app.api.score as score_module
    from app.api.limits import _DEADLINE_KEY
    from app.errors import DeadlineExceeded

    decoded: list[int] = []
    monkeypatch.setattr(score_module, "decode_score", lambda *_, **__: decoded.append(1))
    state = client.app.state.fusionrank
    late = {_DEADLINE_KEY: time.perf_counter() - 1.0}
    with pytest.raises(DeadlineExceeded):
        score_module._answer(state, orjson.dumps(sample_request), "application/json", False, time.perf_counter(), late)
    assert decoded == []


@pytest.mark.parametrize(("settings", "at_once"), [({}, 1), ({"score_in_thread": True, "score_threads": 2}, 2)])
def test_admitted_requests_wait_in_line_for_their_turn_to_score(
    client_factory: Callable[..., TestClient], sample_request: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
    settings: dict[str, Any], at_once: int,
) -> None:
    """Admitted requests score one at a time on the event loop (the default), or on at most
    `score_threads` worker threads: the others wait in line instead of contending for the GIL."""
    import app.api.score as score_module

    real_answer = score_module._answer
    lock = threading.Lock()
    running, most, threads = [0], [0], set()

    def counting_answer(*args: Any, **kwargs: Any) -> bytes:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            threads.add(threading.get_ident())
        try:
            time.sleep(0.02)  # long enough for every admitted request to be waiting or scoring
            return real_answer(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(score_module, "_answer", counting_answer)
    test_client = client_factory(max_in_flight=CAPACITY, **settings)
    body = orjson.dumps(sample_request)
    bad = orjson.dumps({**sample_request, "candidates": []})  # 422 inside the turn: the turn is given back

    async def main() -> tuple[list[int], int]:
        with anyio.fail_after(30):  # a turn that is never given back hangs: fail instead
            return await requests()

    async def requests() -> tuple[list[int], int]:
        async with _client(test_client.app) as client:
            statuses: list[int] = []

            async def one(content: bytes) -> None:
                statuses.append((await client.post("/v1/score", content=content, headers=JSON)).status_code)

            async with anyio.create_task_group() as tg:
                tg.start_soon(one, bad)
                for _ in range(CAPACITY - 1):
                    tg.start_soon(one, body)
            return sorted(statuses), threading.get_ident()

    statuses, loop_thread = anyio.run(main)
    assert statuses == [200] * (CAPACITY - 1) + [422]  # all admitted, all answered
    assert most[0] == at_once
    assert (threads == {loop_thread}) is (at_once == 1)  # the default scores on the event loop's thread


def test_event_loop_scoring_reads_the_sockets_between_two_requests(
    client_factory: Callable[..., TestClient], sample_request: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests ready in the same pass of the loop do not score back to back in it: the loop polls between
    two of them, so newly arrived requests are admitted or shed while a line is being served."""
    import app.api.score as score_module

    real_answer = score_module._answer
    passes = [0]  # passes of the event loop, counted by a task that yields once per pass
    scored_in_pass: list[int] = []

    def recording_answer(*args: Any, **kwargs: Any) -> bytes:
        scored_in_pass.append(passes[0])
        return real_answer(*args, **kwargs)

    monkeypatch.setattr(score_module, "_answer", recording_answer)
    test_client = client_factory(max_in_flight=CAPACITY)
    body = orjson.dumps(sample_request)

    async def main() -> list[int]:
        with anyio.fail_after(30):  # a turn that is never given back hangs: fail instead
            return await requests()

    async def requests() -> list[int]:
        async with _client(test_client.app) as client:
            statuses: list[int] = []

            async def count_passes() -> None:
                while True:
                    passes[0] += 1
                    await anyio.lowlevel.checkpoint()

            async def one() -> None:
                statuses.append((await client.post("/v1/score", content=body, headers=JSON)).status_code)

            async with anyio.create_task_group() as outer:
                outer.start_soon(count_passes)
                async with anyio.create_task_group() as tg:
                    for _ in range(CAPACITY):
                        tg.start_soon(one)
                outer.cancel_scope.cancel()
            return statuses

    assert anyio.run(main) == [200] * CAPACITY
    assert len(scored_in_pass) == CAPACITY
    assert len(set(scored_in_pass)) == CAPACITY, f"several requests scored in one pass: {scored_in_pass}"
