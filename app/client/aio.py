"""`AsyncFusionrankClient`: the asyncio (or trio) client, one pooled `httpx.AsyncClient` per object.

It mirrors `app.client.sync` method for method (awaits aside): a change to one is made to both.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any

import anyio
import httpx

from app.client._call import (
    attempt_timeout,
    needs_attribute_names,
    new_budget,
    on_response,
    on_transport_error,
    score_call,
    score_result,
)
from app.client.bodies import BodyFormat
from app.client.results import ScoreResult, Surface
from app.client.retry import RetryPolicy

__all__ = ["AsyncFusionrankClient"]


class AsyncFusionrankClient:
    """Score candidates on a fusionrank server; use it as an async context manager (or await `aclose()`).

    base_url: e.g. `http://ranker:8000`. timeout: seconds one attempt may take. deadline: the default
    time budget of a call, retries and waits included (None: no deadline); a call's own `deadline=`
    replaces it, and the remaining budget is sent as `X-Request-Deadline-Ms` so that the server drops
    work nobody waits for. retry: attempts and backoff on 503 and connection failures. max_connections:
    the pool's size (connections are kept alive and reused across calls).
    """

    def __init__(
        self, base_url: str, *, timeout: float = 10.0, deadline: float | None = None,
        retry: RetryPolicy | None = None, headers: Mapping[str, str] | None = None, max_connections: int = 16,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.timeout = timeout
        self.deadline = deadline
        self.retry = retry or RetryPolicy()
        self._surfaces: dict[str, Surface] = {}
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=dict(headers or {}), timeout=timeout, transport=transport,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    async def __aenter__(self) -> AsyncFusionrankClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._http.aclose()

    async def score(
        self, surface: str, candidates: Any, *, format: BodyFormat = "rows", context: Mapping[str, Any] | None = None,
        request_id: str | None = None, policy_version: str | None = None, debug: bool = False,
        top_k: int | None = None, return_filtered: bool = False, arrow_answer: bool | None = None,
        deadline: float | None = None,
    ) -> ScoreResult:
        """Rank `candidates` (dicts, a DataFrame or a pyarrow Table) under the surface's policy.

        format: the body sent (`rows`, `columns` or `arrow`); the answer comes as Arrow when
        `arrow_answer` (default: when the body is Arrow). request_id: generated when None.
        """
        if needs_attribute_names(candidates, format):
            await self.surface(surface)  # flat rows are split by the policy's attribute names
        call = score_call(
            surface, candidates, fmt=format, context=context, request_id=request_id, policy_version=policy_version,
            debug=debug, top_k=top_k, return_filtered=return_filtered, arrow_answer=arrow_answer,
            attribute_names=lambda: self._surfaces[surface].attributes,
        )
        response = await self._send("POST", "/v1/score", call.content, call.headers, deadline)
        return score_result(response, call.arrow_answer)

    async def surface(self, surface: str, *, refresh: bool = False, deadline: float | None = None) -> Surface:
        """What the surface needs (`GET /v1/surfaces/{surface}`); kept per client unless `refresh`."""
        if refresh or surface not in self._surfaces:
            response = await self._send("GET", f"/v1/surfaces/{surface}", None, {}, deadline)
            self._surfaces[surface] = Surface.from_json(response.json())
        return self._surfaces[surface]

    async def surfaces(self, *, deadline: float | None = None) -> list[Surface]:
        """Every served surface (`GET /v1/surfaces`)."""
        listing = (await self._send("GET", "/v1/surfaces", None, {}, deadline)).json()
        found = [Surface.from_json(doc) for doc in listing["surfaces"]]
        self._surfaces.update((s.surface, s) for s in found)
        return found

    async def _send(
        self, method: str, path: str, content: bytes | None, headers: Mapping[str, str], deadline: float | None
    ) -> httpx.Response:
        """One call: attempts until an answer is final, the attempts are spent or the deadline passes."""
        budget = new_budget(self.retry, self.deadline if deadline is None else deadline)
        while True:
            remaining = budget.next_attempt()
            try:
                response = await self._http.request(
                    method, path, content=content, headers={**headers, **budget.headers(remaining)},
                    timeout=attempt_timeout(budget, remaining, self.timeout),
                )
            except httpx.TransportError as error:
                await anyio.sleep(on_transport_error(budget, error))
                continue
            wait = on_response(budget, response)
            if wait is None:
                return response
            await anyio.sleep(wait)
