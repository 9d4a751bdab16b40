"""The GBT family end to end: `train` (kind gbt) -> `export` (one ONNX graph) -> served by `/v1/score`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.artifacts import load_manifest
from app.cli import app as cli
from app.control.loader import load_snapshot
from app.main import create_app
from app.offline.training.gbt.ranker import GBTRanker
from app.offline.training.run_folder import RunFolder
from app.offline.training.spec import TrainSpec
from tests.conftest import make_settings
from tests.offline.conftest import tiny_spec, write_spec
from tests.offline.training.test_train_export import TASKS, _policy


def gbt_spec(**gbt: object) -> dict[str, object]:
    """The tiny demo spec with the GBT family (no focal option, no loss comparison)."""
    spec = tiny_spec(compare_losses=[], model={"kind": "gbt", "gbt": {"rounds": 60, **gbt}})
    spec["training"]["losses"] = {"report": {"kind": "weighted", "pos_weight": 4.0}}
    return spec


@pytest.fixture(scope="module")
def trained(tiny_log: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(run folder, model_store) after `train` and `export` through the CLI."""
    root = tmp_path_factory.mktemp("gbt")
    spec = write_spec(root / "spec.yaml", gbt_spec())
    runner = CliRunner()
    result = runner.invoke(
        cli, ["train", "--spec", str(spec), "--data", str(tiny_log), "--out", str(root / "run"), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    store = root / "model_store"
    result = runner.invoke(cli, ["export", "--run", str(root / "run"), "--out", str(store / "trees" / "1")])
    assert result.exit_code == 0, result.output
    return root / "run", store


def test_run_folder_holds_one_booster_per_task_and_a_report(trained: tuple[Path, Path]) -> None:
    run, _ = trained
    assert sorted(p.name for p in (run / "gbt").glob("*.txt")) == [f"{i:02d}_{t}.txt" for i, t in enumerate(TASKS)]
    assert not (run / "model.pt").exists()
    report = json.loads((run / "report.json").read_text())
    assert list(report["tasks"]) == TASKS and 0.5 < report["tasks"]["click"]["overall"]["auc"] <= 1.0
    for task in TASKS:
        row = report["gbt"]["tasks"][task]
        assert 1 <= row["best_iteration"] <= row["rounds_trained"] <= 60
    # Label masks: `hide` is only observed where hide_logged = 1 (and mature), so it trains on fewer rows.
    assert report["gbt"]["tasks"]["hide"]["train_rows"] < report["gbt"]["tasks"]["click"]["train_rows"]
    assert "## Gradient-boosted trees" in (run / "report.md").read_text()


def test_export_is_one_graph_with_logits_and_parity_within_1e_5(trained: tuple[Path, Path]) -> None:
    run, store = trained
    bundle = store / "trees" / "1"
    manifest = load_manifest(bundle)
    assert manifest.parity.tolerance == 1e-5 and manifest.parity.max_abs_diff <= 1e-5
    graph = onnx.load(str(bundle / "model.onnx"))
    assert {o.domain for o in graph.opset_import} <= {"", "ai.onnx.ml"}
    assert [i.name for i in graph.graph.input] == [manifest.io.numeric_input, manifest.io.categorical_input]
    # Raw scores, not probabilities: the graph's logits equal LightGBM's raw scores (some are negative).
    heldout = RunFolder(run).arrays("heldout")
    numeric, categorical = heldout["numeric"].astype(np.float32), heldout["categorical"].astype(np.int64)
    session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {manifest.io.numeric_input: numeric, manifest.io.categorical_input: categorical})
    spec = TrainSpec.model_validate(json.loads((run / "run.json").read_text())["spec"])
    raw = GBTRanker.load(run / "gbt", spec.task_names()).raw_scores(numeric, categorical)
    assert logits.shape == (len(numeric), len(TASKS)) and logits.dtype == np.float32
    assert float(np.max(np.abs(logits - raw))) <= 1e-5
    assert (logits < 0).any()


def test_exported_gbt_bundle_is_served_unchanged(trained: tuple[Path, Path], tmp_path: Path) -> None:
    _, store = trained
    policies = tmp_path / "policies" / "feed"
    policies.mkdir(parents=True)
    (policies / "1.yaml").write_text(yaml.safe_dump(_policy("trees", "1")))
    (policies / "active").write_text("1\n")
    snapshot = load_snapshot(store, tmp_path / "policies")
    assert snapshot.problems == () and "feed" in snapshot.surfaces
    body = json.loads((store / "trees" / "1" / "sample_request.json").read_text())
    body["surface"] = "feed"
    body["candidates"][0]["features"]["device"] = "toaster"  # unknown category -> OOV code 0, still scored
    with TestClient(create_app(make_settings(store=store, policies=tmp_path / "policies"))) as client:
        assert client.get("/readyz").status_code == 200
        answer = client.post("/v1/score", json=body)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["versions"]["model"] == "trees" and len(data["candidates"]) == 5
    assert set(data["candidates"][0]["predictions"]) == set(TASKS)


def test_gbt_spec_refuses_a_constrained_primary_and_a_loss_option_on_it() -> None:
    spec = gbt_spec(primary="click")
    spec["training"]["constraints"] = [{"task": "click", "max_loss": 0.1}]
    with pytest.raises(ValueError, match=r"primary task of model\.kind gbt"):
        TrainSpec.model_validate(spec)
    spec["training"]["constraints"] = [{"task": "purchase", "max_loss": 0.1}]
    spec["training"]["losses"] = {"click": {"kind": "focal"}}
    with pytest.raises(ValueError, match=r"'click' is the constrained primary task .* remove its loss option"):
        TrainSpec.model_validate(spec)
    spec["training"]["losses"] = {"purchase": {"kind": "focal"}}
    TrainSpec.model_validate(spec)  # focal on another task is fine


def test_run_and_bundle_predictions_for_calibration_agree(
    trained: tuple[Path, Path], tiny_log: Path, tmp_path: Path
) -> None:
    """`fusionrank predict` from the run (LightGBM) and from the bundle (onnxruntime) give the same logits."""
    import pyarrow.parquet as pq

    from app.offline.training.predict import predict_bundle, predict_run

    run, store = trained
    from_run = predict_run(run, tiny_log, tmp_path / "run.parquet", splits=["valid"])
    spec_path = write_spec(tmp_path / "spec.yaml", gbt_spec())
    from_bundle = predict_bundle(
        store / "trees" / "1", spec_path, tiny_log, tmp_path / "bundle.parquet", splits=["valid"]
    )
    a, b = pq.read_table(from_run.path), pq.read_table(from_bundle.path)
    assert from_run.rows == from_bundle.rows > 0
    for task in TASKS:
        left, right = a.column(f"logit_{task}").to_numpy(), b.column(f"logit_{task}").to_numpy()
        assert float(np.max(np.abs(left - right))) <= 1e-5
