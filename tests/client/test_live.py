"""The client against a real `fusionrank serve` on 127.0.0.1: the three body formats, typed answers, errors."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import anyio
import pandas as pd
import pyarrow as pa
import pytest

from app.client import APIError, AsyncFusionrankClient, DeadlineExceeded, FusionrankClient, ScoreResult
from tests.reliability.live import LiveServer

pytestmark = pytest.mark.slow


def _flat(sample: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"id": c["id"], **c["features"], **c["attributes"]} for c in sample["candidates"]]


def _same(a: ScoreResult, b: ScoreResult) -> None:
    assert a.ids == b.ids and len(a.ids) > 0
    for x, y in zip(a.candidates, b.candidates, strict=True):
        assert x.rank == y.rank and abs(x.utility - y.utility) <= 1e-12
        assert x.predictions.keys() == y.predictions.keys()
        assert all(abs(x.predictions[t] - y.predictions[t]) <= 1e-12 for t in x.predictions)
    assert a.versions == b.versions and a.arm == b.arm
    assert [(f.id, f.rule) for f in a.filtered or ()] == [(f.id, f.rule) for f in b.filtered or ()]


def test_the_sample_request_in_every_body_format_gets_the_same_answer(
    server: LiveServer, sample: dict[str, Any]
) -> None:
    context = sample["context"]
    with FusionrankClient(server.base, deadline=10) as client:
        results = {
            fmt: client.score("home", sample["candidates"], format=fmt, context=context, request_id=f"r-{fmt}",
                              return_filtered=True)
            for fmt in ("rows", "columns", "arrow")
        }
        flat = _flat(sample)
        frame = pd.DataFrame(flat)
        table = pa.Table.from_pylist(flat)
        others = [
            client.score("home", flat, format="rows", context=context, return_filtered=True),  # split by discovery
            client.score("home", frame, format="rows", context=context, return_filtered=True),
            client.score("home", frame, format="columns", context=context, return_filtered=True),
            client.score("home", table, format="arrow", context=context, return_filtered=True, arrow_answer=False),
            client.score("home", table, format="columns", context=context, return_filtered=True, arrow_answer=True),
        ]
    rows = results["rows"]
    assert rows.request_id == "r-rows" and rows.surface == "home" and rows.arm == "stable"
    assert rows.versions.policy_version == "1" and rows.versions.model == "demo_ranker"
    assert rows.filtered is not None and {f.stage for f in rows.filtered} <= {"guardrail", "slate"}
    assert set(rows.candidates[0].predictions) == {"click", "purchase", "hide", "report"}
    for other in [results["columns"], results["arrow"], *others]:
        _same(rows, other)


def test_debug_answers_carry_the_utility_terms_in_json_and_arrow(server: LiveServer, sample: dict[str, Any]) -> None:
    with FusionrankClient(server.base) as client:
        as_json = client.score("home", sample["candidates"], context=sample["context"], debug=True)
        as_arrow = client.score("home", sample["candidates"], context=sample["context"], debug=True, format="arrow")
    for result in (as_json, as_arrow):
        top = result.candidates[0]
        assert top.debug is not None
        assert abs(sum(t.contribution for t in top.debug.terms) - top.utility) < 1e-9
        assert result.timings_ms is not None and result.filtered is not None
    assert as_json.candidates[0].debug == as_arrow.candidates[0].debug


def test_the_async_client_answers_like_the_sync_one(server: LiveServer, sample: dict[str, Any]) -> None:
    with FusionrankClient(server.base) as client:
        expected = client.score("home", sample["candidates"], context=sample["context"], return_filtered=True)

    async def main() -> tuple[ScoreResult, ScoreResult, list[str]]:
        async with AsyncFusionrankClient(server.base, deadline=10) as client:
            arrow = await client.score("home", sample["candidates"], context=sample["context"], format="arrow",
                                       return_filtered=True)
            rows = await client.score("home", _flat(sample), context=sample["context"], return_filtered=True)
            surfaces = [s.surface for s in await client.surfaces()]
            return arrow, rows, surfaces

    arrow, rows, surfaces = anyio.run(main)
    _same(expected, arrow)
    _same(expected, rows)
    assert surfaces == ["home"]


def test_discovery_is_typed(server: LiveServer) -> None:
    with FusionrankClient(server.base) as client:
        home = client.surface("home")
    assert home.required_features == ["user_activity", "user_age_days"]
    assert home.attributes["margin"] == "number" and home.tasks == ("click", "purchase", "hide", "report")
    assert [(a.arm, a.share) for a in home.arms] == [("stable", 1.0)]
    assert home.document["limits"]["max_candidates"] == 5000


def test_an_error_answer_is_an_api_error_naming_the_field(server: LiveServer, sample: dict[str, Any]) -> None:
    bad = [dict(c, features={**c["features"], "item_price": "cheap"}) for c in sample["candidates"]]
    with FusionrankClient(server.base) as client:
        with pytest.raises(APIError) as raised:
            client.score("home", bad, context=sample["context"])
        assert raised.value.status == 422 and raised.value.code == "invalid_request"
        assert raised.value.details[0].field == "candidates[0].features.item_price"
        with pytest.raises(APIError) as unknown:
            client.score("nope", sample["candidates"])
        assert unknown.value.status == 404


def test_a_spent_deadline_is_a_deadline_error(server: LiveServer, sample: dict[str, Any]) -> None:
    many = [dict(c, id=f"{c['id']}-{i}") for i in range(150) for c in sample["candidates"]]  # 4500: ~20 ms of work
    with FusionrankClient(server.base) as client:
        with pytest.raises(DeadlineExceeded):  # the client's wait or the server's 504, whichever ends first
            client.score("home", many, context=sample["context"], deadline=0.005)
        assert client.score("home", sample["candidates"], context=sample["context"], deadline=5).ids


def test_importing_the_client_loads_no_server_code_nor_numpy() -> None:
    code = (
        "import sys, app.client; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'pyarrow', 'pandas', "
        "'fastapi', 'pydantic', 'onnxruntime') or (m.startswith('app.') and not m.startswith('app.client'))); "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
