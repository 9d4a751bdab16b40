"""A small real served log (the demo service with logging on) and outcomes around its impression time."""

from __future__ import annotations

import copy
import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from fastapi.testclient import TestClient

from app.main import create_app
from tests.conftest import make_settings

VERSIONS = {"model": "demo_ranker", "model_version": "1", "calibration_version": "1"}


def write_served_log(root: Path, sample: dict[str, Any], requests: int = 3, *, features: bool = True) -> datetime:
    """Serve `requests` copies of the sample body (req-0...) with the log on; the earliest impression time."""
    settings = make_settings(served_log="home:1.0", served_log_path=str(root), served_log_features=features)
    with TestClient(create_app(settings)) as client:
        for i in range(requests):
            body = copy.deepcopy(sample)
            body["request_id"] = f"req-{i}"
            body["context"]["user_id"] = f"user-{i}"
            assert client.post("/v1/score", json=body).status_code == 200
    ts = pq.read_table(root / "served", columns=["ts"])["ts"].to_pylist()
    return min(ts)


def served_rows(root: Path) -> list[dict[str, Any]]:
    return pq.read_table(root / "served", columns=["request_id", "candidate_id", "position"]).to_pylist()


def write_outcomes_csv(path: Path, events: list[tuple[str, str, str, int, datetime]]) -> Path:
    """(request_id, candidate_id, task, label, event_time) rows as a user's own CSV."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["request_id", "candidate_id", "task", "label", "event_time"])
        for request_id, candidate_id, task, label, moment in events:
            writer.writerow([request_id, candidate_id, task, label, moment.astimezone(UTC).isoformat()])
    return path


def scenario(root: Path, t0: datetime) -> tuple[list[tuple[str, str, str, int, datetime]], dict[str, str]]:
    """Outcomes exercising every rule; names: which candidate plays which part."""
    rows = served_rows(root)
    shown = sorted((r for r in rows if r["request_id"] == "req-0" and r["position"] is not None),
                   key=lambda r: r["position"])
    hidden = next(r for r in rows if r["request_id"] == "req-0" and r["position"] is None)
    a, b, c = (r["candidate_id"] for r in shown[:3])
    events = [
        ("req-0", a, "click", 1, t0 + timedelta(minutes=10)),  # within the 1 h window
        ("req-0", a, "purchase", 1, t0 + timedelta(minutes=30)),  # purchase window 72 h: immature at as_of
        ("req-0", b, "click", 1, t0 + timedelta(minutes=90)),  # late: after the 1 h window
        ("req-0", c, "click", 1, t0 + timedelta(hours=3)),  # after as_of: not known yet
        ("req-0", hidden["candidate_id"], "click", 1, t0 + timedelta(minutes=5)),  # never shown: stays unobserved
        ("nope", a, "click", 1, t0 + timedelta(minutes=5)),  # no such request
    ]
    return events, {"a": a, "b": b, "c": c, "hidden": hidden["candidate_id"]}
