"""Retries and deadlines of one call: how long to wait before the next attempt, and how much time is left.

A call is retried on a 503 (the server sheds load, is not ready yet or drains) and on a connection
that could not be made or was dropped before an answer; nothing else. Waits grow exponentially with
full jitter (so that clients shed together do not come back together) and never end before the
server's `Retry-After`; a wait that would end past the call's deadline is not taken: the call fails then.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from app.client.errors import DeadlineExceeded

__all__ = ["DEADLINE_HEADER", "CallBudget", "RetryPolicy", "retry_after_seconds"]

# The server's deadline header (app/api/limits.py): the caller's remaining budget in whole milliseconds.
DEADLINE_HEADER = "X-Request-Deadline-Ms"
_MAX_DEADLINE_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """attempts: tries in all (1: never retry); backoff: the first wait's upper bound, doubled per retry up
    to max_backoff (seconds); max_retry_after: a longer `Retry-After` is not waited for."""

    attempts: int = 3
    backoff: float = 0.05
    max_backoff: float = 2.0
    max_retry_after: float = 10.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts={self.attempts}: make at least one attempt (1 = no retry)")
        if not (self.backoff >= 0 and self.max_backoff >= self.backoff and self.max_retry_after >= 0):
            raise ValueError("RetryPolicy: backoff >= 0, max_backoff >= backoff and max_retry_after >= 0")

    def wait(self, retry: int, retry_after: float | None, rng: Callable[[], float] = random.random) -> float:
        """Seconds before retry number `retry` (1 = the first retry): jittered backoff, at least Retry-After."""
        jittered = rng() * min(self.max_backoff, self.backoff * 2.0 ** (retry - 1))
        return jittered if retry_after is None else retry_after + jittered * 0.1


def retry_after_seconds(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date (RFC 9110); None when absent or bad."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


@dataclass(slots=True)
class CallBudget:
    """One call's attempts so far and its deadline (seconds on `clock`; None: no deadline)."""

    policy: RetryPolicy
    deadline: float | None
    clock: Callable[[], float] = time.monotonic
    attempt: int = 0
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - (self.clock() - self.started)

    def next_attempt(self) -> float | None:
        """Count an attempt; its time budget (None: no deadline). Raises `DeadlineExceeded` when no time is left."""
        remaining = self.remaining()
        if remaining is not None and remaining <= 0:
            raise DeadlineExceeded(f"the call's deadline of {self.deadline:g} s passed after {self.attempt} attempt(s)")
        self.attempt += 1
        return remaining

    def headers(self, remaining: float | None) -> dict[str, str]:
        """The deadline header for an attempt with `remaining` seconds left."""
        if remaining is None:
            return {}
        return {DEADLINE_HEADER: str(min(_MAX_DEADLINE_MS, max(1, math.ceil(remaining * 1000))))}

    def retry_wait(self, retry_after: float | None) -> float | None:
        """Seconds to wait before the next attempt, or None when the call must fail now: no attempt
        left, a Retry-After longer than the policy accepts, or a wait that ends past the deadline."""
        if self.attempt >= self.policy.attempts:
            return None
        if retry_after is not None and retry_after > self.policy.max_retry_after:
            return None
        wait = self.policy.wait(self.attempt, retry_after)
        remaining = self.remaining()
        if remaining is not None and wait >= remaining:
            return None
        return wait
