"""A seeded schema-driven fuzz run over every route (the 10,000+ request run is bench/fuzz_run.py)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from app.main import create_app
from tests.conftest import ADMIN, ADMIN_TOKEN, make_settings
from tests.reliability.fuzzing import fuzz

EXAMPLES_PER_OPERATION = 40


def test_every_route_answers_documented_4xx_never_5xx(store_copy: tuple[Path, Path]) -> None:
    store, policies = store_copy
    settings = make_settings(
        store, policies, admin_tokens={"ops": ADMIN_TOKEN}, policy_watch_interval=0, persist_pointers=False,
        max_candidates=200,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:

        def send(
            method: str, url: str, headers: dict[str, str], body: bytes | None
        ) -> tuple[int, dict[str, str], bytes]:
            response = client.request(method, url, headers=headers, content=body)
            return response.status_code, dict(response.headers), response.content

        schema = client.get("/openapi.json").json()
        report = fuzz(
            schema, send, examples_per_operation=EXAMPLES_PER_OPERATION, seed=20261126, admin_headers=ADMIN,
        )
    operations = sum(len(methods) for methods in schema["paths"].values())
    assert report.failures == []
    assert operations >= 10 and len(report.by_operation) == operations  # every operation was exercised
    assert report.requests >= 10 * EXAMPLES_PER_OPERATION // 2
    assert any(400 <= s < 500 for s in report.statuses) and 200 in report.statuses
