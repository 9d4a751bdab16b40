"""Retries, Retry-After and deadlines, against a scripted server on a real socket (tests/client/conftest.py)."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from app.client import (
    AsyncFusionrankClient,
    ConnectionFailed,
    DeadlineExceeded,
    FusionrankClient,
    RetryPolicy,
    Unavailable,
)
from app.client.retry import CallBudget, retry_after_seconds
from tests.client.conftest import Reply, StubServer
from tests.reliability.live import free_port

ANSWER: dict[str, Any] = {
    "request_id": "r1", "surface": "home",
    "versions": {"model": "m", "model_version": "1", "calibration_version": "1", "policy_version": "1"},
    "candidates": [{"id": "a", "rank": 1, "utility": 0.5, "predictions": {"click": 0.5}}],
}
OVERLOADED: dict[str, Any] = {"error": {"code": "overloaded", "message": "too many requests in flight", "details": []}}
CANDIDATES = [{"id": "a", "features": {"x": 1.0}}]


def test_a_503_is_retried_after_its_retry_after(stub: StubServer) -> None:
    stub.replies = [Reply(503, OVERLOADED, {"Retry-After": "1"}), Reply(200, ANSWER)]
    with FusionrankClient(stub.base, retry=RetryPolicy(attempts=3)) as client:
        t0 = time.monotonic()
        result = client.score("home", CANDIDATES)
        took = time.monotonic() - t0
    assert result.ids == ["a"] and result.arm == "stable"
    assert len(stub.received) == 2
    assert stub.times[1] - stub.times[0] >= 1.0  # not sooner than the server asked
    assert took < 2.0


def test_the_remaining_budget_is_sent_and_shrinks_across_attempts(stub: StubServer) -> None:
    stub.replies = [Reply(503, OVERLOADED, {"Retry-After": "0"}), Reply(200, ANSWER)]
    with FusionrankClient(stub.base, retry=RetryPolicy(attempts=2, backoff=0.2, max_backoff=0.2)) as client:
        client.score("home", CANDIDATES, deadline=2.0)
    first, second = (int(r["x-request-deadline-ms"]) for r in stub.received)
    assert 1500 < first <= 2000 and second < first


def test_attempts_are_bounded(stub: StubServer) -> None:
    stub.replies = [Reply(503, OVERLOADED, {"Retry-After": "0"})]
    client = FusionrankClient(stub.base, retry=RetryPolicy(attempts=3, backoff=0.01))
    with client, pytest.raises(Unavailable) as raised:
        client.score("home", CANDIDATES)
    assert len(stub.received) == 3
    assert raised.value.status == 503 and raised.value.code == "overloaded"


def test_a_retry_after_past_the_deadline_fails_at_once(stub: StubServer) -> None:
    stub.replies = [Reply(503, OVERLOADED, {"Retry-After": "5"}), Reply(200, ANSWER)]
    with FusionrankClient(stub.base) as client:
        t0 = time.monotonic()
        with pytest.raises(Unavailable):
            client.score("home", CANDIDATES, deadline=1.0)
        assert time.monotonic() - t0 < 0.5  # did not sleep for nothing
    assert len(stub.received) == 1


def test_the_deadline_bounds_a_slow_answer(stub: StubServer) -> None:
    stub.replies = [Reply(200, ANSWER, delay=3.0)]
    with FusionrankClient(stub.base, timeout=30) as client:
        t0 = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            client.score("home", CANDIDATES, deadline=0.3)
        assert time.monotonic() - t0 < 1.0
    assert int(stub.received[0]["x-request-deadline-ms"]) <= 300


def test_a_504_is_a_deadline_error_and_not_retried(stub: StubServer) -> None:
    expired = {"error": {"code": "deadline_exceeded", "message": "the request deadline passed", "details": []}}
    stub.replies = [Reply(504, expired)]
    with FusionrankClient(stub.base) as client, pytest.raises(DeadlineExceeded, match="deadline passed"):
        client.score("home", CANDIDATES, deadline=1.0)
    assert len(stub.received) == 1


def test_connection_failures_are_retried_then_reported() -> None:
    port = free_port()  # nothing listens there
    client = FusionrankClient(f"http://127.0.0.1:{port}", retry=RetryPolicy(attempts=3, backoff=0.01))
    with client, pytest.raises(ConnectionFailed, match="attempt 3 of 3"):
        client.score("home", CANDIDATES)


def test_the_async_client_retries_the_same_way(stub: StubServer) -> None:
    stub.replies = [Reply(503, OVERLOADED, {"Retry-After": "0"}), Reply(200, ANSWER)]

    async def main() -> list[str]:
        async with AsyncFusionrankClient(stub.base, retry=RetryPolicy(attempts=2)) as client:
            return (await client.score("home", CANDIDATES, format="columns")).ids

    assert anyio.run(main) == ["a"]
    assert len(stub.received) == 2


def test_retry_after_as_seconds_or_http_date() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=lambda: 1445412470.0) == 10.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_backoff_grows_with_jitter_within_bounds() -> None:
    policy = RetryPolicy(attempts=10, backoff=0.1, max_backoff=0.4)
    assert [policy.wait(n, None, rng=lambda: 1.0) for n in (1, 2, 3, 4)] == [0.1, 0.2, 0.4, 0.4]
    assert policy.wait(1, None, rng=lambda: 0.0) == 0.0
    assert policy.wait(2, 1.0, rng=lambda: 1.0) == pytest.approx(1.02)  # Retry-After, plus a little jitter
    budget = CallBudget(RetryPolicy(attempts=2), deadline=None)
    budget.next_attempt()
    assert budget.retry_wait(30.0) is None  # past max_retry_after: not waited for
    with pytest.raises(ValueError, match="at least one attempt"):
        RetryPolicy(attempts=0)
