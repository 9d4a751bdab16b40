"""The served and outcomes logs: sampled by request id, one row per candidate, whole files only, bounded."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from app.artifacts.served_log import log_kind
from app.main import create_app
from app.monitoring.log_files import LogFiles, open_filesystem
from app.monitoring.served_log import ServedLog, sampled
from app.settings import Settings
from tests.conftest import MODEL_STORE, POLICIES, make_settings

TOKEN = "servedlog-admin-token-0123456789"

VERSIONS = {"model": "demo_ranker", "model_version": "1", "calibration_version": "1"}


def _body(sample: dict[str, Any], request_id: str) -> dict[str, Any]:
    body = copy.deepcopy(sample)
    body["request_id"] = request_id
    return body


def _metric(client: TestClient, name: str, **labels: str) -> float | None:
    value: float | None = client.app.state.fusionrank.metrics.registry.get_sample_value(name, labels)  # type: ignore[attr-defined]
    return value


def test_sampling_is_a_deterministic_share_of_request_ids() -> None:
    ids = [f"r{i}" for i in range(20_000)]
    picked = [sampled(i, 0.1) for i in ids]
    assert picked == [sampled(i, 0.1) for i in ids]
    assert 0.09 < sum(picked) / len(ids) < 0.11
    assert all(sampled(i, 1.0) for i in ids[:10]) and not any(sampled(i, 0.0) for i in ids[:10])
    assert all(sampled(i, 0.3) for i in ids if sampled(i, 0.1))  # a higher rate logs a superset


def test_the_rates_setting_names_a_bad_pair() -> None:
    with pytest.raises(ValueError, match="home:2"):
        Settings(model_store=MODEL_STORE, policies=POLICIES, served_log="home:2")
    settings = Settings(model_store=MODEL_STORE, policies=POLICIES, served_log="home:0.1, *:1", served_log_path="x")
    assert settings.served_log_rates() == {"home": 0.1, "*": 1.0}
    assert Settings(model_store=MODEL_STORE, policies=POLICIES, served_log="home:1").served_log_rates() == {}


def test_served_and_outcomes_rows_are_written_whole_and_flushed_at_shutdown(
    client_factory: Callable[..., TestClient], sample_request: dict[str, Any], tmp_path: Path
) -> None:
    root = tmp_path / "logs"
    client = client_factory(served_log="home:1.0", served_log_path=str(root), served_log_features=True)
    answers = []
    for i in range(3):
        response = client.post("/v1/score", json=_body(sample_request, f"req-{i}"))
        assert response.status_code == 200
        answers.append(response.json())
    served = answers[0]["candidates"][0]
    feedback = {
        "event_id": "e1", "task": "click", "prediction": served["predictions"]["click"], "label": 1,
        **VERSIONS, "event_time": "2026-11-26T07:00:00Z", "request_id": "req-0", "candidate_id": served["id"],
    }
    assert client.post("/v1/feedback", json={"events": [feedback]}).json()["accepted"] == 1
    assert not list(root.rglob("*.parquet"))  # still open: only hidden temporary files
    client.__exit__(None, None, None)  # lifespan shutdown = the SIGTERM drain

    table = pq.read_table(root / "served")
    n = len(sample_request["candidates"])
    assert table.num_rows == 3 * n
    assert log_kind(pq.read_schema(next((root / "served").rglob("*.parquet")))) == "served"
    rows = [r for r in table.to_pylist() if r["request_id"] == "req-0"]
    by_id = {r["candidate_id"]: r for r in rows}
    first = by_id[served["id"]]
    assert first["position"] == 0 and first["filtered_rule"] is None and first["surface"] == "home"
    assert first["sticky_key"] == "user-911" and first["arm"] == "stable"
    assert dict(first["predictions"])["click"] == pytest.approx(served["predictions"]["click"], abs=1e-12)
    assert first["utility"] == pytest.approx(served["utility"], abs=1e-12)
    positions = sorted(r["position"] for r in rows if r["position"] is not None)
    assert positions == list(range(len(answers[0]["candidates"])))
    filtered = {f["id"]: f["rule"] for f in answers[0]["filtered"]}
    unserved = {r["candidate_id"]: r["filtered_rule"] for r in rows if r["position"] is None}
    assert {k: v for k, v in unserved.items() if v != "top_k"} == filtered
    assert len(unserved) == n - len(answers[0]["candidates"])
    candidate = next(c for c in sample_request["candidates"] if c["id"] == served["id"])
    numeric = dict(first["features_numeric"])
    assert numeric["item_price"] == pytest.approx(candidate["features"]["item_price"], rel=1e-6)
    assert numeric["user_activity"] == pytest.approx(7.858, rel=1e-6)  # from the request context
    assert dict(first["features_categorical"])["device"] == "ios"
    outcomes = pq.read_table(root / "outcomes").to_pylist()
    assert [(o["request_id"], o["candidate_id"], o["task"], o["label"]) for o in outcomes] == [
        ("req-0", served["id"], "click", 1)
    ]
    assert _metric(client, "fusionrank_log_rows_total", kind="served") == 3 * n
    assert _metric(client, "fusionrank_log_files_total", kind="outcomes") == 1


def test_a_surface_not_listed_is_not_logged(
    client_factory: Callable[..., TestClient], sample_request: dict[str, Any], tmp_path: Path
) -> None:
    client = client_factory(served_log="search:1.0", served_log_path=str(tmp_path))
    assert client.post("/v1/score", json=sample_request).status_code == 200
    client.__exit__(None, None, None)
    assert not list(tmp_path.rglob("*.parquet"))
    assert _metric(client, "fusionrank_log_dropped_requests_total", kind="served", reason="queue_full") == 0


def test_a_full_queue_drops_and_counts_instead_of_growing(
    client_factory: Callable[..., TestClient], sample_request: dict[str, Any], tmp_path: Path
) -> None:
    client = client_factory(served_log="home:1.0", served_log_path=str(tmp_path), served_log_queue_size=1)
    log: ServedLog = client.app.state.fusionrank.served_log  # type: ignore[attr-defined]
    log.stop()  # no writer: the queue can only fill
    for i in range(5):
        assert client.post("/v1/score", json=_body(sample_request, f"q{i}")).status_code == 200
    assert log._queue.qsize() == 1
    assert _metric(client, "fusionrank_log_dropped_requests_total", kind="served", reason="queue_full") == 4


def test_files_rotate_by_size_and_by_age(tmp_path: Path) -> None:
    clock = [0.0]
    fs, base = open_filesystem(str(tmp_path))
    files = LogFiles(
        fs, base, "outcomes", pa.schema([("x", pa.float64())]), rotate_bytes=10_000, rotate_seconds=10,
        clock=lambda: clock[0],
    )
    partition = "date=2026-01-01/hour=00"
    files.write(partition, pa.record_batch([pa.array(np.arange(10.0))], names=["x"]))
    assert files.open_files == 1
    assert not list(tmp_path.rglob("*.parquet")) and len(list(tmp_path.rglob(".*.tmp"))) == 1
    clock[0] = 11.0
    files.rotate_due()
    assert files.open_files == 0
    rng = np.random.default_rng(0)
    for _ in range(3):  # each 70k-row batch passes 10 kB: written, closed, renamed
        files.write(partition, pa.record_batch([pa.array(rng.random(70_000))], names=["x"]))
    assert files.open_files == 0
    assert pq.read_table(tmp_path / "outcomes").num_rows == 10 + 3 * 70_000
    assert len(list((tmp_path / "outcomes").rglob("*.parquet"))) == 4
    assert not list(tmp_path.rglob(".*.tmp"))


def test_an_fsspec_uri_gets_the_same_whole_files(tmp_path: Path) -> None:
    """A scheme pyarrow does not know (here fsspec's in-memory store, standing in for an object store)."""
    fsspec = pytest.importorskip("fsspec")
    fs, base = open_filesystem("memory://fusionrank-test/logs")
    files = LogFiles(fs, base, "outcomes", pa.schema([("x", pa.float64())]), rotate_bytes=10_000, rotate_seconds=60)
    files.write("date=2026-01-01/hour=00", pa.record_batch([pa.array([1.0, 2.0])], names=["x"]))
    store = fsspec.filesystem("memory")
    assert [p for p in store.find("/fusionrank-test/logs") if p.endswith(".parquet")] == []  # only the hidden temp
    files.close_all()
    written = [p for p in store.find("/fusionrank-test/logs") if p.endswith(".parquet")]
    assert len(written) == 1 and "/outcomes/date=2026-01-01/hour=00/part-" in written[0]
    with store.open(written[0], "rb") as f:
        assert pq.read_table(f)["x"].to_pylist() == [1.0, 2.0]


def test_an_unknown_scheme_names_the_setting_and_the_fix() -> None:
    from app.errors import ArtifactError

    with pytest.raises(ArtifactError, match=r"FUSIONRANK_SERVED_LOG_PATH.*install fsspec"):
        open_filesystem("nosuch://bucket/logs")


def test_the_sticky_key_follows_the_canary_or_the_setting(
    store_copy: tuple[Path, Path], sample_request: dict[str, Any], tmp_path: Path
) -> None:
    store, policies = store_copy
    sample_request["context"]["attributes"]["account"] = "acct-7"
    root = tmp_path / "log"
    settings = make_settings(store, policies, admin_token=TOKEN, served_log="home:1.0", served_log_path=str(root))
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/score", json=_body(sample_request, "before")).status_code == 200
        canary = client.post("/admin/surfaces/home/canary", headers={"Authorization": f"Bearer {TOKEN}"},
                             json={"policy_version": "2", "fraction": 0.5, "key": "context.attributes.account"})
        assert canary.status_code == 200, canary.text
        assert client.post("/v1/score", json=_body(sample_request, "during")).status_code == 200
    keys = {r["request_id"]: r["sticky_key"] for r in pq.read_table(root / "served").to_pylist()}
    assert keys == {"before": "user-911", "during": "acct-7"}  # the canary's key while it runs

    settings = make_settings(served_log="home:1.0", served_log_path=str(tmp_path / "set"),
                             served_log_sticky_key="context.attributes.user_segment")
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/score", json=_body(sample_request, "set")).status_code == 200
    assert set(pq.read_table(tmp_path / "set" / "served")["sticky_key"].to_pylist()) == {"regular"}
    with pytest.raises(ValueError, match="served_log_sticky_key"):
        make_settings(served_log_sticky_key="context user")
