"""`fusionrank demo` end to end on a small log: bundle, parity, determinism, served by the app."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.artifacts import check_calibration_for, load_calibration, load_manifest, sha256_file
from app.artifacts.loading import check_policy_against, load_policy
from app.cli import app as cli
from app.main import create_app
from app.offline.demo import DemoConfig, run_demo
from app.offline.synthetic import generator as syn
from app.offline.training.onnx_export import parity_max_abs_diff
from tests.conftest import make_settings

SMALL = DemoConfig(seed=3, rows=12_000, epochs=1, show_progress=False)  # as the CLI call below


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    result = CliRunner().invoke(
        cli, ["demo", "--out", str(out), "--seed", "3", "--rows", "12000", "--epochs", "1", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "parity torch vs onnxruntime" in result.output
    return out


def test_demo_writes_a_loadable_bundle_and_policy(demo_out: Path) -> None:
    bundle = demo_out / "model_store" / "demo_ranker" / "1"
    manifest = load_manifest(bundle)
    assert manifest.task_names() == list(syn.TASKS)
    assert {t.name: t.polarity for t in manifest.tasks}["hide"] == "negative"
    assert manifest.parity is not None and manifest.parity.max_abs_diff < 1e-4
    assert manifest.parity.batch_sizes == [1, 7, 1000]
    path = bundle / "calibration" / "1.json"
    check_calibration_for(load_calibration(path), manifest, path)
    assert (demo_out / "policies" / "home" / "active").read_text().strip() == "1"
    assert (demo_out / "demo_data" / "predictions.parquet").is_file()
    total = sum(f.stat().st_size for f in (demo_out / "model_store").rglob("*") if f.is_file())
    assert total < 5_000_000


def test_onnx_contract_logits_with_dynamic_batch(demo_out: Path) -> None:
    session = ort.InferenceSession(str(demo_out / "model_store" / "demo_ranker" / "1" / "model.onnx"))
    inputs = {i.name: i for i in session.get_inputs()}
    assert inputs["numeric"].type == "tensor(float)" and inputs["categorical"].type == "tensor(int64)"
    assert isinstance(inputs["numeric"].shape[0], str)  # symbolic batch axis
    (output,) = session.get_outputs()
    assert output.name == "logits" and output.shape[1] == len(syn.TASKS)
    for batch in (1, 3, 257):
        numeric = np.zeros((batch, len(syn.NUMERIC)), np.float32)
        categorical = np.zeros((batch, len(syn.CATEGORICAL)), np.int64)  # all out of vocabulary
        (logits,) = session.run(None, {"numeric": numeric, "categorical": categorical})
        assert logits.shape == (batch, len(syn.TASKS)) and np.isfinite(logits).all()


def test_parity_check_detects_a_different_model(demo_out: Path, tmp_path: Path) -> None:
    from app.offline.training.models.shared_bottom import MultiTaskRanker

    torch.manual_seed(0)
    other = MultiTaskRanker(
        numeric_mean=np.zeros(len(syn.NUMERIC)), numeric_std=np.ones(len(syn.NUMERIC)),
        vocabulary_sizes=[len(v) for v in syn.CATEGORICAL.values()], n_tasks=len(syn.TASKS),
    )
    rng = np.random.default_rng(0)
    numeric = rng.normal(size=(1000, len(syn.NUMERIC))).astype(np.float32)
    categorical = rng.integers(0, 3, size=(1000, len(syn.CATEGORICAL)))
    from app.errors import ArtifactError

    with pytest.raises(ArtifactError, match="differs from torch"):
        parity_max_abs_diff(other, demo_out / "model_store" / "demo_ranker" / "1" / "model.onnx", numeric, categorical)


def test_same_seed_same_bundle_bytes(demo_out: Path, tmp_path: Path) -> None:
    run_demo(tmp_path, SMALL)
    for name in ("model.onnx", "manifest.json", "calibration/1.json", "sample_request.json", "golden.json"):
        a = demo_out / "model_store" / "demo_ranker" / "1" / name
        b = tmp_path / "model_store" / "demo_ranker" / "1" / name
        assert sha256_file(a) == sha256_file(b), name
    for name in ("policies/home/1.yaml", "demo_data/spec.yaml", "demo_data/predictions.parquet"):
        assert sha256_file(demo_out / name) == sha256_file(tmp_path / name), name


def test_model_onnx_carries_no_path_or_source_line(demo_out: Path) -> None:
    import onnx

    model = onnx.load(str(demo_out / "model_store" / "demo_ranker" / "1" / "model.onnx"))
    assert model.graph.node and not any(node.metadata_props for node in model.graph.node)
    assert b"/app/offline/" not in (demo_out / "model_store" / "demo_ranker" / "1" / "model.onnx").read_bytes()


def test_demo_runs_the_train_export_predict_calibrate_path(demo_out: Path) -> None:
    import pyarrow.parquet as pq

    from app.offline.training.run_folder import RunFolder
    from app.offline.training.spec import load_spec

    data = demo_out / "demo_data"
    spec = load_spec(data / "spec.yaml")
    assert RunFolder(data / "run").read()["spec"] == spec.model_dump(mode="json")  # `train` read that spec
    assert spec.training.seed == SMALL.seed and spec.training.epochs == SMALL.epochs
    predictions = pq.read_table(data / "predictions.parquet", columns=["split"]).column(0).to_pylist()
    assert set(predictions) == {"valid", "test"}
    calibration = load_calibration(demo_out / "model_store" / "demo_ranker" / "1" / "calibration" / "1.json")
    test_rows = predictions.count("test")
    assert f"metrics on {test_rows} held-out rows (split by split = test)" in (calibration.notes or "")


def test_demo_bundle_is_served_and_sample_request_filters(demo_out: Path) -> None:
    settings = make_settings(store=demo_out / "model_store", policies=demo_out / "policies")
    body = json.loads((demo_out / "model_store" / "demo_ranker" / "1" / "sample_request.json").read_text())
    assert len(body["candidates"]) == 40
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200
        answer = client.post("/v1/score", json=body).json()
    assert answer["candidates"] and answer["versions"]["model"] == "demo_ranker"
    assert any(f["rule"] == "not_eligible" for f in answer["filtered"])


def test_demo_policy_version_2_validates_and_serves_beside_the_active_version_1(demo_out: Path) -> None:
    """Version 2 (`app.offline.demo_ranking`, shipped as version 3): product form, creator decay, a fresh-item
    minimum on the sample's `is_new`; not active."""
    policies = demo_out / "policies" / "home"
    bundle = demo_out / "model_store" / "demo_ranker" / "1"
    v2 = load_policy(policies / "2.yaml")
    check_policy_against(v2, load_manifest(bundle), "1", policies / "2.yaml")
    assert v2.ranking is not None and v2.ranking.form == "product" and v2.ranking.diversity and v2.ranking.minimums
    assert (policies / "active").read_text().strip() == "1"
    body = json.loads((bundle / "sample_request.json").read_text())
    assert all(c["attributes"]["is_new"] == (c["features"]["item_age_hours"] < 24) for c in body["candidates"])
    body["options"] = {"debug": True}
    settings = make_settings(store=demo_out / "model_store", policies=demo_out / "policies")
    with TestClient(create_app(settings)) as client:
        active = client.post("/v1/score", json=body).json()
        second = client.post("/v1/score", json={**body, "policy_version": "2"}).json()
    assert active["versions"]["policy_version"] == "1" and second["versions"]["policy_version"] == "2"
    assert "ranking" not in active["candidates"][0]["debug"] and "ranking" in second["candidates"][0]["debug"]
    new = {c["id"] for c in body["candidates"] if c["attributes"]["is_new"]}
    assert len(new & {c["id"] for c in second["candidates"][:10]}) >= 4 or second["slate_shortfalls"]


def test_calibration_improves_the_rare_tasks_ratio(demo_out: Path) -> None:
    calibration = load_calibration(demo_out / "model_store" / "demo_ranker" / "1" / "calibration" / "1.json")
    click = calibration.tasks["click"].metrics
    # class-weighted training over-predicts; Platt brings the ratio back toward 1
    assert abs(click.after["calibration_ratio"] - 1) < abs(click.before["calibration_ratio"] - 1)


def test_demo_calibration_corrects_segments(demo_out: Path) -> None:
    calibration = load_calibration(demo_out / "model_store" / "demo_ranker" / "1" / "calibration" / "1.json")
    for task in calibration.tasks.values():
        assert [s.feature for s in task.segments] == list(syn.SEGMENTS)
        assert "field_rce.user_tenure" in task.metrics.after
    click = calibration.tasks["click"].metrics
    assert click.after["field_rce.item_type"] < click.before["field_rce.item_type"]
