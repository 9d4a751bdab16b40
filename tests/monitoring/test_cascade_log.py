"""The served log of a cascade policy: candidates the first stage cut are not logged, the rest keep their place."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from fastapi.testclient import TestClient

from tests.cascade_helpers import cascade_policy, copy_bundle_as


def test_cut_candidates_are_left_out_of_the_served_log(
    client_factory: Callable[..., TestClient], store_copy: tuple[Path, Path], sample_request: dict[str, Any],
    tmp_path: Path,
) -> None:
    store, policies = store_copy
    copy_bundle_as(store, "demo_light")
    cascade_policy(policies, "3", top_n=25, task="click")
    (policies / "home" / "active").write_text("3\n")
    root = tmp_path / "logs"
    client = client_factory(store=store, policies=policies, served_log="home:1.0", served_log_path=str(root))
    body = {**sample_request, "request_id": "req-c", "options": {"debug": True}}
    answer = client.post("/v1/score", json=body).json()
    client.__exit__(None, None, None)
    cut = {c["index"] for c in answer["cascade"]["cut"]}
    assert len(cut) == 15 and answer["versions"]["first_stage_model"] == "demo_light"
    rows = pq.read_table(root / "served").to_pylist()
    assert len(rows) == 25
    assert {r["candidate_index"] for r in rows} == set(range(40)) - cut
    assert all(math.isfinite(p) for r in rows for _, p in r["predictions"])
    assert {r["policy_version"] for r in rows} == {"3"}
