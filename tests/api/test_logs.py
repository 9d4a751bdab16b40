"""Structured logs: the request id on every line and in error bodies, the access log, audit fields, formats."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api import score
from app.main import create_app
from app.monitoring.logs import (
    RequestContext,
    StructuredJsonFormatter,
    TextFormatter,
    set_request,
    uvicorn_log_config,
)
from tests.conftest import ADMIN, ADMIN_TOKEN, make_settings, write_policy


@pytest.fixture
def json_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """fusionrank's log lines written since the last call, as the JSON format writes them (parsed)."""
    stream = io.StringIO()
    read = 0

    def new_lines() -> list[dict[str, Any]]:
        nonlocal read
        text = stream.getvalue()
        lines, read = text[read:].splitlines(), len(text)
        return [json.loads(line) for line in lines]

    handler = logging.StreamHandler(stream)
    handler.setFormatter(StructuredJsonFormatter())
    logger = logging.getLogger("fusionrank")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield new_lines
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_a_sent_request_id_is_echoed_and_on_every_line_of_the_request(
    client_factory: Callable[..., TestClient], store_copy: tuple[Path, Path],
    json_lines: Callable[[], list[dict[str, Any]]], sample_request: dict[str, Any],
) -> None:
    store, policies = store_copy
    write_policy(policies, "2")
    client = client_factory(store=store, policies=policies, policy_watch_interval=0, admin_token=ADMIN_TOKEN,
                            access_log_sample_rate=1.0)
    json_lines()  # start-up lines are not a request's
    answer = client.post("/admin/policies/home/activate", json={"version": "2"},
                         headers={**ADMIN, "X-Request-ID": "abc"})
    assert answer.status_code == 200 and answer.headers["x-request-id"] == "abc"
    lines = json_lines()
    # the new policy served, its audit record, the access line
    assert {line["logger"] for line in lines} == {"fusionrank.state", "fusionrank.audit", "fusionrank.access"}
    assert all(line["request_id"] == "abc" for line in lines)
    (audit,) = [line for line in lines if line["logger"] == "fusionrank.audit"]
    # The audit record's fields are fields of the line, not JSON inside its message.
    assert audit["event"] == "policy_change" and audit["who"] == "admin"
    assert (audit["surface"], audit["action"], audit["from"], audit["to"], audit["outcome"]) == (
        "home", "activate", "1", "2", "applied")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", audit["time"]) and audit["level"] == "INFO"

    scored = client.post("/v1/score", json=sample_request, headers={"X-Request-ID": "req-2"})
    assert scored.status_code == 200
    (access,) = [line for line in json_lines() if line.get("request_id") == "req-2"]
    versions = scored.json()["versions"]
    assert access["logger"] == "fusionrank.access"
    assert (access["method"], access["route"], access["status"]) == ("POST", "/v1/score", 200)
    assert access["candidates"] == len(sample_request["candidates"]) and access["arm"] == "stable"
    assert access["model_version"] == versions["model_version"]
    assert access["policy_version"] == versions["policy_version"] == "2"
    assert 0 < access["latency_ms"] < 60_000


def test_without_a_usable_request_id_one_is_generated(client: TestClient) -> None:
    ids = []
    for headers in ({}, {"X-Request-ID": "two words"}, {"X-Request-ID": "x" * 129}):
        answer = client.get("/healthz", headers=headers)
        ids.append(answer.headers["x-request-id"])
        assert re.fullmatch(r"[0-9a-f]{32}", ids[-1]), ids[-1]
    assert len(set(ids)) == 3


def test_no_access_line_unless_sampled(client: TestClient, json_lines: Callable[[], list[dict[str, Any]]]) -> None:
    client.get("/healthz", headers={"X-Request-ID": "quiet"})
    assert [line for line in json_lines() if line.get("request_id") == "quiet"] == []


def test_an_error_body_carries_the_request_id(client: TestClient) -> None:
    answer = client.post("/v1/score", json={"surface": "home"}, headers={"X-Request-ID": "bad-body-1"})
    assert answer.status_code == 422
    assert answer.json()["error"]["request_id"] == "bad-body-1" == answer.headers["x-request-id"]
    missing = client.get("/no/such/route")
    assert missing.json()["error"]["request_id"] == missing.headers["x-request-id"]


def test_a_500_names_its_request_id_and_its_log_line_carries_it(
    monkeypatch: pytest.MonkeyPatch, json_lines: Callable[[], list[dict[str, Any]]], sample_request: dict[str, Any],
) -> None:
    def broken(*_: Any, **__: Any) -> bytes:
        raise RuntimeError("encoder broke")

    monkeypatch.setattr(score, "encode_score", broken)
    with TestClient(create_app(make_settings()), raise_server_exceptions=False) as client:
        answer = client.post("/v1/score", json=sample_request, headers={"X-Request-ID": "boom-1"})
    assert answer.status_code == 500 and answer.headers["x-request-id"] == "boom-1"
    error = answer.json()["error"]
    assert error["request_id"] == "boom-1" and "boom-1" in error["message"]
    (line,) = [line for line in json_lines() if line.get("request_id") == "boom-1"]
    assert line["level"] == "ERROR" and "RuntimeError: encoder broke" in line["exc_info"]


def test_text_format_has_the_same_fields_for_a_terminal() -> None:
    set_request(RequestContext("term-1"))
    record = logging.LogRecord("fusionrank.audit", logging.INFO, __file__, 1, "policy_change %s", ("activate",), None)
    record.__dict__.update({"surface": "home", "outcome": "applied"})
    line = TextFormatter().format(record)
    assert re.fullmatch(
        r"\S+ \S+ INFO fusionrank.audit \[term-1\] policy_change activate surface=home outcome=applied", line
    ), line
    set_request(RequestContext("-"))


def test_uvicorn_lines_go_through_the_same_json_formatter(capsys: pytest.CaptureFixture[str]) -> None:
    names = ("uvicorn", "uvicorn.error", "uvicorn.access", "fusionrank")
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level, logging.getLogger(n).propagate)
             for n in names}
    try:
        logging.config.dictConfig(uvicorn_log_config("info", "json"))
        set_request(RequestContext("uv-1"))
        logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
        logging.getLogger("fusionrank.http").warning("from the app")
    finally:
        for name, (handlers, level, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate
        set_request(RequestContext("-"))
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(line["logger"], line["message"], line["request_id"]) for line in lines] == [
        ("uvicorn.error", "Started server process [42]", "uv-1"), ("fusionrank.http", "from the app", "uv-1")]
