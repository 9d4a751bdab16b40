"""A run of logged requests written as one batch gives exactly the rows of each request written alone."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from app.monitoring.served_columns import Served, ServedColumns
from app.monitoring.served_log import ServedLog


@pytest.mark.parametrize("features", [False, True])
def test_a_run_is_the_concatenation_of_its_requests(
    client_factory: Callable[..., TestClient], sample_request: dict[str, Any], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, features: bool,
) -> None:
    captured: list[Served] = []
    monkeypatch.setattr(ServedLog, "_put", lambda self, item, kind: captured.append(item) or True)
    client = client_factory(served_log="home:1.0", served_log_path=str(tmp_path), served_log_features=features)
    for i, (size, top_k) in enumerate([(None, None), (3, None), (None, 2), (1, None)]):
        body = copy.deepcopy(sample_request)
        body["request_id"] = f"r{i}"
        body["candidates"] = body["candidates"][:size]
        body["options"] = {"top_k": top_k} if top_k else {}
        if i == 3:
            del body["context"]["user_id"]
        assert client.post("/v1/score", json=body).status_code == 200
    columns = ServedColumns(features)
    run = pa.Table.from_batches([columns.batch(captured)])
    alone = pa.Table.from_batches([columns.batch([item]) for item in captured])
    assert run.equals(alone)
    rows = run.to_pylist()
    assert [r["candidate_index"] for r in rows if r["request_id"] == "r1"] == [0, 1, 2]
    assert {r["sticky_key"] for r in rows if r["request_id"] == "r3"} == {None}
    assert {r["filtered_rule"] for r in rows if r["request_id"] == "r2" and r["position"] is None} >= {"top_k"}
    assert (run["features_numeric"].null_count == 0) is features
