"""calibrate fit, tune, simulate and train read a joined log as `fusionrank logs join` writes it."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from app.cli import app
from app.offline.logs import join_logs, write_joined
from tests.conftest import MODEL_STORE, POLICIES
from tests.offline.conftest import tiny_spec
from tests.offline.logs.helpers import write_served_log

TASKS = ("click", "purchase", "hide", "report")


@pytest.fixture(scope="module")
def joined(tmp_path_factory: pytest.TempPathFactory, sample_request_body: dict[str, Any]) -> Path:
    """40 logged requests; outcomes drawn from the served predictions (floored so every task has positives)."""
    root = tmp_path_factory.mktemp("joined")
    t0 = write_served_log(root / "log", sample_request_body, requests=40)
    served = pq.read_table(root / "log" / "served").to_pylist()
    rng = np.random.default_rng(3)
    rows = []
    for row in served:
        if row["position"] is None:
            continue
        for task, p in dict(row["predictions"]).items():
            if rng.random() < max(p, 0.1):
                rows.append((row["request_id"], row["candidate_id"], task, 1, row["ts"] + timedelta(minutes=1)))
    outcomes = root / "outcomes.parquet"
    request_id, candidate_id, task, label, event_time = zip(*rows, strict=True)
    pq.write_table(pa.table({"request_id": request_id, "candidate_id": candidate_id, "task": task,
                             "label": pa.array(label, pa.int8()), "event_time": event_time}), outcomes)
    table, _ = join_logs(root / "log", outcomes, t0 + timedelta(hours=100), MODEL_STORE)
    out = root / "joined.parquet"
    write_joined(table, out)
    return out


def _run(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def test_calibrate_fit_reads_logits_labels_masks_and_segments(joined: Path, tmp_path: Path) -> None:
    out = tmp_path / "calibration.json"
    _run(["calibrate", "fit", "--predictions", str(joined), "--out", str(out), "--segment", "device",
          "--no-progress", "--version", "from-log", "--holdout", "0"])  # a tiny log: no held-out metrics
    fitted = json.loads(out.read_text())
    assert set(fitted["tasks"]) == set(TASKS)
    served = int(pq.read_table(joined, columns=["mask_click"])["mask_click"].to_numpy().sum())
    assert 0 < served < pq.read_metadata(joined).num_rows  # removed candidates are not training rows


def test_tune_and_simulate_replay_the_logged_candidate_sets(joined: Path, tmp_path: Path) -> None:
    weights = tmp_path / "weights.json"
    _run(["tune", "regret", "--logs", str(joined), "--target", "click=0.5", "--target", "purchase=0.5",
          "--out", str(weights), "--no-progress"])
    assert json.loads(weights.read_text())["weights"]
    report = tmp_path / "simulate"
    _run(["simulate", "--logs", str(joined), "--policy", str(POLICIES / "home" / "1.yaml"),
          "--out", str(report), "--no-progress"])
    assert "ndcg" in (report / "results.json").read_text().lower()  # scored against the joined labels


def test_train_maps_its_spec_onto_the_joined_columns(joined: Path, tmp_path: Path) -> None:
    ts = np.sort(pq.read_table(joined, columns=["ts"])["ts"].to_pylist())
    spec = tiny_spec(epochs=1, early_stopping_patience=1)
    spec["dataset"]["split"] = {"valid_start": ts[len(ts) * 6 // 10].isoformat(),
                                "test_start": ts[len(ts) * 8 // 10].isoformat()}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    _run(["train", "--spec", str(path), "--data", str(joined), "--out", str(tmp_path / "run"), "--no-progress"])
    assert (tmp_path / "run").is_dir()
