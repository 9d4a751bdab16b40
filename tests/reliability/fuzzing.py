"""Schema-driven fuzzing of the live app (schemathesis strategies, hypothesis engine).

Shared by the seeded run in the suite (`test_fuzz_schema.py`, through a TestClient) and the 10,000+
request run in `bench/fuzz_run.py` (through httpx against a real uvicorn). Every operation of the
OpenAPI schema is exercised with schema-conforming ("positive") and schema-violating ("negative")
cases, admin operations with and without a valid bearer token. A response passes when it is not a
5xx, its status is one the operation documents, a 4xx carries the one error shape, and it came
back within `MAX_SECONDS`.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from schemathesis import GenerationMode

__all__ = ["MAX_SECONDS", "FuzzReport", "Send", "fuzz"]

MAX_SECONDS = 5.0
# (method, url path with query, headers, body bytes or None) -> (status, headers, body)
Send = Callable[[str, str, dict[str, str], bytes | None], tuple[int, dict[str, str], bytes]]


@dataclass
class FuzzReport:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    slowest_seconds: float = 0.0


def _check(op: Any, status: int, body: bytes, seconds: float) -> str | None:
    documented = {str(code) for code in op.definition.raw.get("responses", {})} | {"200"}
    if seconds > MAX_SECONDS:
        return f"took {seconds:.1f} s"
    if status >= 500:
        return f"{status}: {body[:300]!r}"
    if str(status) not in documented:
        return f"undocumented status {status} (documented: {sorted(documented)}): {body[:200]!r}"
    if status >= 400:
        try:
            error = orjson.loads(body)["error"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return f"{status} not in the error shape: {body[:200]!r}"
        if not (isinstance(error.get("code"), str) and isinstance(error.get("message"), str)):
            return f"{status} error without code/message: {error}"
        details = error.get("details")
        if not isinstance(details, list):
            return f"{status} error without a details list: {error}"
        if status in (413, 422) and not all(d.get("field") and d.get("fix") for d in details):
            return f"{status} detail without field or fix: {error}"
    return None


def fuzz(
    raw_schema: dict[str, Any],
    send: Send,
    *,
    examples_per_operation: int,
    seed: int,
    admin_headers: dict[str, str],
    modes: tuple[GenerationMode, ...] = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE),
) -> FuzzReport:
    """Send generated cases for every operation of `raw_schema`; collect what failed."""
    schema = schemathesis.openapi.from_dict(raw_schema)
    report = FuzzReport()
    for result in schema.get_all_operations():
        _fuzz_operation(result.ok(), send, report, examples_per_operation, seed, admin_headers, modes)
    return report


def _fuzz_operation(
    op: Any, send: Send, report: FuzzReport, examples: int, seed: int, admin_headers: dict[str, str],
    modes: tuple[GenerationMode, ...],
) -> None:
    name = f"{op.method.upper()} {op.path}"
    strategy = st.one_of(*(op.as_strategy(generation_mode=mode) for mode in modes))
    with_token = st.booleans() if op.path.startswith("/admin") else st.just(False)

    @hypothesis_seed(seed)
    @settings(max_examples=examples, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=strategy, token=with_token)
    def run(case: Any, token: bool) -> None:
        kwargs = case.as_transport_kwargs(base_url="")
        headers = {str(k): str(v) for k, v in (kwargs.get("headers") or {}).items()}
        headers.pop("Accept-Encoding", None)
        if token:
            headers.update(admin_headers)
        url = kwargs["url"]
        params = kwargs.get("params") or {}
        if params:
            url += "?" + urllib.parse.urlencode(params, doseq=True)
        t0 = time.perf_counter()
        status, _, content = send(kwargs["method"], url, headers, _body(kwargs))
        seconds = time.perf_counter() - t0
        report.requests += 1
        report.statuses[status] += 1
        report.by_operation[name] += 1
        report.slowest_seconds = max(report.slowest_seconds, seconds)
        problem = _check(op, status, content, seconds)
        if problem is not None and len(report.failures) < 50:
            report.failures.append(f"{name} ({'token' if token else 'no token'}): {problem}")

    run()


def _body(kwargs: dict[str, Any]) -> bytes | None:
    if "json" in kwargs:
        return json.dumps(kwargs["json"], allow_nan=True).encode()
    data = kwargs.get("data")
    if data is None:
        return None
    return data if isinstance(data, bytes) else str(data).encode()
