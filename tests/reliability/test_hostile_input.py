"""Hand-written hostile bodies: every answer is a documented 4xx in the one error shape, or a 200 for
input that is odd but valid; never a 5xx, never a hang (each call is timed)."""

from __future__ import annotations

import copy
import gzip
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from tests.conftest import ADMIN, ADMIN_TOKEN

MAX_SECONDS = 5.0  # per call; a hang fails the test instead of stalling the suite


def _body(sample: dict[str, Any], edit: Callable[[dict[str, Any]], None]) -> bytes:
    data = copy.deepcopy(sample)
    edit(data)
    return orjson.dumps(data)


def _feature(name: str, value: object) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        data["candidates"][3]["features"][name] = value

    return edit


def _raw_feature(sample: dict[str, Any], literal: str) -> bytes:
    """The sample with candidate 3's item_price written as a raw JSON token (NaN, 1e999 ...)."""
    marker = 123456.654321
    text = _body(sample, _feature("item_price", marker)).decode()
    return text.replace(str(marker), literal, 1).encode()


def _nested(depth: int) -> bytes:
    return b'{"surface": "home", "candidates": ' + b"[" * depth + b"]" * depth + b"}"


# name -> (body builder from the sample, extra headers, allowed statuses)
CASES: dict[str, tuple[Callable[[dict[str, Any]], bytes], dict[str, str], set[int]]] = {
    "NaN feature": (lambda s: _raw_feature(s, "NaN"), {}, {422}),
    "Infinity feature": (lambda s: _raw_feature(s, "Infinity"), {}, {422}),
    "1e999 feature (overflows to inf)": (lambda s: _raw_feature(s, "1e999"), {}, {422}),
    "1e308 feature (inf as float32)": (lambda s: _raw_feature(s, "1e308"), {}, {422}),
    "-0.0 feature": (lambda s: _raw_feature(s, "-0.0"), {}, {200}),
    "string for a number": (lambda s: _body(s, _feature("item_price", "12.5")), {}, {422}),
    "bool for a number": (lambda s: _body(s, _feature("item_price", True)), {}, {422}),
    "object for a number": (lambda s: _body(s, _feature("item_price", {"$gt": 1})), {}, {422}),
    "unicode id": (lambda s: _body(s, lambda d: d["candidates"][0].update(id="商品-🛒-\u202e-é")), {}, {200}),
    "10 kB id": (lambda s: _body(s, lambda d: d["candidates"][0].update(id="x" * 10_240)), {}, {200, 422}),
    "lone surrogate id": (
        lambda s: _body(s, lambda d: d["candidates"][0].update(id="SURR")).replace(b"SURR", b"\\ud800"), {}, {422},
    ),
    "duplicate keys (last wins)": (
        lambda s: orjson.dumps(s)[:-1] + b', "surface": "nope"}', {}, {404},
    ),
    "deeply nested JSON": (lambda _: _nested(100_000), {}, {413}),  # refused by the container count
    "truncated body": (lambda s: orjson.dumps(s)[:-7], {}, {422}),
    "empty body": (lambda _: b"", {}, {422}),
    "not an object": (lambda _: b"[1, 2, 3]", {}, {422}),
    "wrong content type": (lambda s: orjson.dumps(s), {"content-type": "text/plain"}, {415}),
    "json-like content type": (lambda s: orjson.dumps(s), {"content-type": "application/evil+json"}, {415}),
    "gzip body (not accepted: no decompression)": (
        lambda s: gzip.compress(orjson.dumps(s)), {"content-encoding": "gzip"}, {415},
    ),
    "gzip bomb (10 MB of zeros in ~10 kB)": (
        lambda _: gzip.compress(b"0" * 10_000_000), {"content-encoding": "gzip"}, {415},
    ),
    "zero candidates": (lambda s: _body(s, lambda d: d.update(candidates=[])), {}, {422}),
    "max+1 candidates": (
        lambda s: _body(s, lambda d: d.update(candidates=d["candidates"] * 3)), {}, {413},
    ),
    "unknown top-level field": (lambda s: _body(s, lambda d: d.update(__proto__={"x": 1})), {}, {422}),
    "negative top_k": (lambda s: _body(s, lambda d: d["options"].update(top_k=-1)), {}, {422}),
    "huge top_k": (
        lambda s: _body(s, lambda d: d["options"].update(top_k="BIG")).replace(b'"BIG"', b"1" + b"0" * 30), {},
        {422},
    ),
    "surface with ..": (lambda s: _body(s, lambda d: d.update(surface="../../etc")), {}, {404, 422}),
    "policy pin to a path": (lambda s: _body(s, lambda d: d.update(policy_version="/etc/passwd")), {}, {404, 422}),
}


def assert_error_shape(response: Any, *, needs_details: bool) -> None:
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], list)
    if needs_details:
        assert error["details"], body
        for detail in error["details"]:
            assert set(detail) <= {"message", "field", "candidate_index", "fix"}
            assert detail.get("field") and detail.get("fix"), detail


@pytest.fixture(scope="module")
def strict_client() -> Any:
    """The shipped bundle with small limits, so that "just over the limit" is cheap to send."""
    from app.main import create_app
    from tests.conftest import make_settings

    settings = make_settings(max_candidates=100, max_body_bytes=256 * 1024, policy_watch_interval=0)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_score_body(name: str, strict_client: TestClient, sample_request: dict[str, Any]) -> None:
    build, headers, allowed = CASES[name]
    content = build(sample_request)
    t0 = time.perf_counter()
    response = strict_client.post(
        "/v1/score", content=content, headers={"content-type": "application/json", **headers}
    )
    assert time.perf_counter() - t0 < MAX_SECONDS
    assert response.status_code in allowed, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        assert_error_shape(response, needs_details=response.status_code in (413, 422))
    if name.endswith("feature") and response.status_code == 200:
        for item in response.json()["candidates"]:
            assert all(0.0 <= v <= 1.0 for v in item["predictions"].values())


def test_a_body_just_over_the_size_limit_is_413_without_reading_it(strict_client: TestClient) -> None:
    limit = 256 * 1024
    exact = b'{"surface": "home", "candidates": [], "pad": "' + b"x" * (limit - 48) + b'"}'
    assert len(exact) == limit
    at_limit = strict_client.post("/v1/score", content=exact, headers={"content-type": "application/json"})
    assert at_limit.status_code == 422  # read and parsed: within the limit
    over = strict_client.post("/v1/score", content=exact + b" ", headers={"content-type": "application/json"})
    assert over.status_code == 413
    assert_error_shape(over, needs_details=True)
    assert over.json()["error"]["details"][0]["field"] == "body"


def test_a_bad_candidate_is_named_by_index(strict_client: TestClient, sample_request: dict[str, Any]) -> None:
    response = strict_client.post(
        "/v1/score", content=_body(sample_request, _feature("item_price", "cheap")),
        headers={"content-type": "application/json"},
    )
    detail = response.json()["error"]["details"][0]
    assert detail["candidate_index"] == 3
    assert "candidates[3]" in detail["field"] and "item_price" in detail["field"]


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"[]", b'{"events": []}', b'{"events": {}}', _nested(50_000), b'{"events": [1], "x": 2}'],
)
def test_hostile_feedback_envelope(body: bytes, strict_client: TestClient) -> None:
    response = strict_client.post("/v1/feedback", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert_error_shape(response, needs_details=True)


@pytest.mark.parametrize(
    "event",
    [{"prediction": float("inf")}, {"label": "1"}, {"event_id": "x" * 10_240}, {"event_time": "yesterday"}, {}],
)
def test_hostile_feedback_event_rejects_only_itself(event: dict[str, Any], strict_client: TestClient) -> None:
    from tests.api.test_feedback import event as good_event

    bad = {**good_event("hostile-bad"), **event} if event else {"nothing": None}
    body = orjson.dumps({"events": [good_event(f"hostile-ok-{time.monotonic_ns()}"), bad]})
    response = strict_client.post("/v1/feedback", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200
    answer = response.json()
    assert answer["accepted"] == 1
    assert [r["index"] for r in answer["rejected"]] == [1]


def test_admin_routes_with_bad_tokens_and_bodies(client_factory: Callable[..., TestClient]) -> None:
    client = client_factory(admin_tokens={"ops": ADMIN_TOKEN}, policy_watch_interval=0, persist_pointers=False)
    cases = [
        ("get", "/admin/policies", {}, None, 401),
        ("get", "/admin/policies", {"authorization": "Basic " + "a" * 10_000}, None, 401),
        ("get", "/admin/policies", {"authorization": "Bearer \t\t"}, None, 401),
        ("post", "/admin/policies/home/activate", ADMIN, b"{", 422),
        ("post", "/admin/policies/home/activate", ADMIN, b'{"version": 3}', 422),
        ("post", "/admin/policies/home/activate", ADMIN, b'{"version": "' + b"9" * 100 + b'"}', 422),
        ("post", "/admin/policies/nope/activate", ADMIN, b'{"version": "1"}', 404),
        ("post", "/admin/policies/home/shadow", ADMIN, b'{"version": "../1"}', 422),
    ]
    for method, path, headers, content, status in cases:
        headers = {"content-type": "application/json", **headers}
        response = client.request(method, path, headers=headers, content=content)
        assert response.status_code == status, (path, headers, content, response.text)
        assert_error_shape(response, needs_details=status == 422)


@pytest.mark.parametrize("key", ["", "a.b", "[0]"])
def test_odd_unknown_keys_are_still_named(key: str, strict_client: TestClient, sample_request: dict[str, Any]) -> None:
    """Found by bench/fuzz_run.py: an unknown key "" left the error detail without a field."""
    body = _body(sample_request, lambda d: d.update({key: 1}))
    response = strict_client.post("/v1/score", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert_error_shape(response, needs_details=True)
    assert response.json()["error"]["details"][0]["field"] == f"[{orjson.dumps(key).decode()}]"


def test_odd_unknown_feedback_keys_are_still_named(strict_client: TestClient) -> None:
    """Found by bench/fuzz_run.py: an unknown envelope key "" gave an empty field."""
    body = b'{"events": [], "": 1}'
    response = strict_client.post("/v1/feedback", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert_error_shape(response, needs_details=True)
    assert response.json()["error"]["details"][0]["field"] == '[""]'
