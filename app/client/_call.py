"""What the sync and the async client share: building a scoring call, and judging each attempt's outcome.

The two clients differ only in how they send a request and sleep; everything else lives here, so
that both retry, time out and read answers the same way.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from app.client.bodies import ARROW_MEDIA_TYPE, JSON_MEDIA_TYPE, BodyFormat, encode_body
from app.client.errors import APIError, ConnectionFailed, DeadlineExceeded, ErrorDetail, Unavailable
from app.client.results import ScoreResult
from app.client.retry import CallBudget, RetryPolicy, retry_after_seconds

__all__ = [
    "ScoreCall", "attempt_timeout", "needs_attribute_names", "new_budget", "on_response", "on_transport_error",
    "score_call", "score_result",
]

_ROW_KEYS = frozenset({"id", "features", "attributes"})
# Failures where the request may not have reached the application (or its answer got lost): a score
# is a pure function of the request, so trying again is safe.
_RETRYABLE = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError,
              httpx.WriteError)


@dataclass(frozen=True, slots=True)
class ScoreCall:
    """A prepared `POST /v1/score`: body, headers, and whether the answer comes as Arrow."""

    content: bytes
    headers: dict[str, str]
    arrow_answer: bool


def needs_attribute_names(candidates: Any, fmt: BodyFormat) -> bool:
    """True when a row-JSON body is asked of flat candidates: they are split by the policy's attribute names."""
    if fmt != "rows":
        return False
    if type(candidates).__module__.startswith(("pandas", "pyarrow")):
        return True
    return isinstance(candidates, Sequence) and any(
        isinstance(row, Mapping) and not _ROW_KEYS.issuperset(row) for row in candidates
    )


def score_call(
    surface: str, candidates: Any, *, fmt: BodyFormat, context: Mapping[str, Any] | None, request_id: str | None,
    policy_version: str | None, debug: bool, top_k: int | None, return_filtered: bool, arrow_answer: bool | None,
    attribute_names: Callable[[], Collection[str]],
) -> ScoreCall:
    options: dict[str, Any] = {"debug": debug, "return_filtered": return_filtered}
    if top_k is not None:
        options["top_k"] = top_k
    envelope: dict[str, Any] = {
        "request_id": request_id or uuid.uuid4().hex, "surface": surface, "context": dict(context or {}),
        "options": options,
    }
    if policy_version is not None:
        envelope["policy_version"] = policy_version
    content, content_type = encode_body(envelope, candidates, fmt, attribute_names)
    arrow = fmt == "arrow" if arrow_answer is None else arrow_answer
    headers = {"Content-Type": content_type, "Accept": ARROW_MEDIA_TYPE if arrow else JSON_MEDIA_TYPE}
    return ScoreCall(content, headers, arrow)


def score_result(response: httpx.Response, arrow: bool) -> ScoreResult:
    if response.headers.get("content-type", "").startswith(ARROW_MEDIA_TYPE):
        return ScoreResult.from_arrow(response.content)
    return ScoreResult.from_json(response.json())


def on_response(budget: CallBudget, response: httpx.Response) -> float | None:
    """None: the answer is final (a success; an error is raised). A number: wait that long, then retry."""
    status = response.status_code
    if status < 400:
        return None
    if status == 503:
        wait = budget.retry_wait(retry_after_seconds(response.headers.get("retry-after")))
        if wait is not None:
            return wait
        raise _api_error(response, Unavailable)
    if status == 504:
        raise DeadlineExceeded(_api_error(response, APIError).message)
    raise _api_error(response, APIError)


def on_transport_error(budget: CallBudget, error: httpx.TransportError) -> float:
    """Seconds to wait before retrying a request that failed in transport; raises when it must not be."""
    if isinstance(error, _RETRYABLE):
        wait = budget.retry_wait(None)
        if wait is not None:
            return wait
    if isinstance(error, httpx.TimeoutException) and not isinstance(error, httpx.ConnectTimeout):
        raise DeadlineExceeded(f"no answer within the call's time budget ({type(error).__name__})") from error
    raise ConnectionFailed(
        f"{type(error).__name__} on attempt {budget.attempt} of {budget.policy.attempts}: {error}"
    ) from error


def attempt_timeout(budget: CallBudget, remaining: float | None, timeout: float) -> float:
    """An attempt waits at most the client's timeout, and never past the call's deadline."""
    return timeout if remaining is None else min(timeout, remaining)


def _api_error(response: httpx.Response, kind: type[APIError]) -> APIError:
    request_id = response.headers.get("x-request-id")
    try:
        error = response.json()["error"]
        details = tuple(ErrorDetail.from_dict(d) for d in error.get("details", []))
        return kind(response.status_code, str(error["code"]), str(error["message"]), details, request_id)
    except (ValueError, KeyError, TypeError):  # not the service's envelope (a proxy's page, say)
        text = response.text[:200]
        return kind(response.status_code, f"http_{response.status_code}", text or response.reason_phrase,
                    (), request_id)


def new_budget(policy: RetryPolicy, deadline: float | None) -> CallBudget:
    if deadline is not None and not deadline > 0:
        raise ValueError(f"deadline={deadline!r}: give the call a positive number of seconds (or None)")
    return CallBudget(policy, deadline)
