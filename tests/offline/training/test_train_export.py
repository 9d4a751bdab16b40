"""`fusionrank train` then `fusionrank export` end to end on a tiny log, then served by the app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.artifacts import load_calibration, load_manifest
from app.cli import app as cli
from app.control.loader import load_snapshot
from app.errors import ArtifactError
from app.main import create_app
from app.offline.training.bundle import export_run
from app.offline.training.onnx_export import parity_max_abs_diff
from app.offline.training.run_folder import RunFolder
from tests.conftest import make_settings
from tests.offline.conftest import tiny_spec, write_spec

TASKS = ["click", "purchase", "hide", "report"]


def _policy(name: str, version: str) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "surface": "feed",
        "name": "trained model, simple utility",
        "version": "1",
        "model": {"name": name, "version": version},
        "calibration_version": "1",
        "utility": [
            {"name": "click", "task": "click", "weight": 1.0},
            {"name": "purchase", "task": "purchase", "weight": 5.0},
            {"name": "hide_penalty", "task": "hide", "weight": -2.0},
        ],
        "guardrails": [{"name": "report_risk", "task": "report", "above": 0.5}],
        "slate": {"top_k": 5},
        "governance": {
            "owner": "ranking-team",
            "approved_by": ["reviewer"],
            "created_at": "2026-11-01T00:00:00Z",
            "change_note": "test policy",
        },
    }


@pytest.fixture(scope="module")
def trained(tiny_log: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(run folder, model_store) after `train` and `export` through the CLI."""
    root = tmp_path_factory.mktemp("e2e")
    spec = write_spec(root / "spec.yaml", tiny_spec(compare_losses=["bce", "focal", "weighted"]))
    runner = CliRunner()
    result = runner.invoke(
        cli, ["train", "--spec", str(spec), "--data", str(tiny_log), "--out", str(root / "run"), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    store = root / "model_store"
    result = runner.invoke(cli, ["export", "--run", str(root / "run"), "--out", str(store / "tiny" / "3")])
    assert result.exit_code == 0, result.output
    assert "max |diff|" in result.output
    return root / "run", store


def test_run_folder_has_report_checkpoints_and_history(trained: tuple[Path, Path]) -> None:
    run, _ = trained
    report = json.loads((run / "report.json").read_text())
    assert list(report["tasks"]) == TASKS
    click = report["tasks"]["click"]
    for metric in ("auc", "logloss", "normalised_entropy", "calibration_ratio", "ece", "precision", "recall", "f1"):
        assert metric in click["overall"]
    assert 0.5 < click["overall"]["auc"] <= 1.0
    assert set(click["segments"]) == {"user_tenure", "item_type"} and click["segments"]["user_tenure"]
    assert set(report["loss_comparison"]) == {"bce", "focal", "weighted"}
    markdown = (run / "report.md").read_text()
    assert "## Loss options side by side" in markdown and "## click by user_tenure" in markdown
    assert sorted(p.name for p in (run / "checkpoints").iterdir())[:1] == ["epoch_001.pt"]
    checkpoint = torch.load(run / "checkpoints" / "epoch_001.pt", weights_only=True)
    assert {"model", "optimizer", "lambdas", "epoch"} <= set(checkpoint)
    assert len(report["history"]) == 2


def test_export_writes_a_manifest_the_loader_accepts(trained: tuple[Path, Path]) -> None:
    _, store = trained
    manifest = load_manifest(store / "tiny" / "3")
    assert manifest.task_names() == TASKS
    assert manifest.parity is not None and manifest.parity.batch_sizes == [1, 7, 1000]
    assert manifest.parity.max_abs_diff <= 1e-4
    assert {t.name: t.label_window_hours for t in manifest.tasks}["purchase"] == 72
    assert manifest.features.numeric[0].name == "user_activity" and manifest.features.numeric[0].default is None
    assert "auc" in manifest.metrics["click"] and manifest.code_version.startswith("fusionrank")
    assert manifest.training_window.start < manifest.training_window.end
    calibration = load_calibration(store / "tiny" / "3" / "calibration" / "1.json")
    assert calibration.model is not None and calibration.model.sha256 == manifest.model_sha256


def test_onnx_graph_is_one_file_with_dynamic_batch_and_task_order(trained: tuple[Path, Path]) -> None:
    run, store = trained
    bundle = store / "tiny" / "3"
    assert sorted(p.name for p in bundle.iterdir()) == [
        "calibration",
        "golden.json",
        "manifest.json",
        "model.onnx",
        "sample_request.json",
    ]
    # The golden batch written at export is reproduced when the service loads the bundle.
    from app.control.loader import BundleCache

    assert BundleCache(store, 1).bundle("tiny", "3").golden_max_abs_diff == 0.0
    session = ort.InferenceSession(str(bundle / "model.onnx"))
    numeric = session.get_inputs()[0]
    assert numeric.name == "numeric" and isinstance(numeric.shape[0], str)
    _, _, model, _ = RunFolder(run).load()
    heldout = RunFolder(run).arrays("heldout")
    for size in (1, 7, len(heldout["numeric"])):  # the tiny log has < 1000 test rows
        n, c = heldout["numeric"][:size], heldout["categorical"][:size]
        (logits,) = session.run(["logits"], {"numeric": n, "categorical": c})
        with torch.no_grad():
            expected = model(torch.from_numpy(n), torch.from_numpy(c)).numpy()
        assert logits.shape == (size, 4)
        np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)
    # out-of-vocabulary rows (index 0 everywhere) still score
    zeros = np.zeros((3, heldout["categorical"].shape[1]), np.int64)
    (logits,) = session.run(["logits"], {"numeric": heldout["numeric"][:3], "categorical": zeros})
    assert np.isfinite(logits).all()


def test_parity_failure_blocks_the_export(trained: tuple[Path, Path]) -> None:
    run, store = trained
    _, _, model, _ = RunFolder(run).load()
    heldout = RunFolder(run).arrays("heldout")
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.01)
    with pytest.raises(ArtifactError, match="differs from torch"):
        parity_max_abs_diff(
            model,
            store / "tiny" / "3" / "model.onnx",
            heldout["numeric"],
            heldout["categorical"],
            batch_sizes=(1, 7, 100),
        )


def test_export_refuses_to_overwrite_a_bundle(trained: tuple[Path, Path]) -> None:
    run, store = trained
    with pytest.raises(ArtifactError, match="immutable"):
        export_run(run, store / "tiny" / "3")


def test_exported_bundle_is_served_with_a_policy(trained: tuple[Path, Path], tmp_path: Path) -> None:
    _, store = trained
    policies = tmp_path / "policies" / "feed"
    policies.mkdir(parents=True)
    (policies / "1.yaml").write_text(yaml.safe_dump(_policy("tiny", "3")))
    (policies / "active").write_text("1\n")
    snapshot = load_snapshot(store, tmp_path / "policies")
    assert snapshot.problems == () and "feed" in snapshot.surfaces
    body = json.loads((store / "tiny" / "3" / "sample_request.json").read_text())
    body["surface"] = "feed"
    body["candidates"][0]["features"]["device"] = "toaster"  # unknown category -> OOV, still scored
    with TestClient(create_app(make_settings(store=store, policies=tmp_path / "policies"))) as client:
        assert client.get("/readyz").status_code == 200
        answer = client.post("/v1/score", json=body)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["versions"]["model"] == "tiny" and len(data["candidates"]) == 5
    assert set(data["candidates"][0]["predictions"]) == set(TASKS)


def test_train_reports_a_bad_spec_without_a_traceback(tiny_log: Path, tmp_path: Path) -> None:
    spec = tiny_spec()
    spec["dataset"]["numeric"][0]["name"] = "user_activty"
    result = CliRunner().invoke(
        cli,
        [
            "train",
            "--spec",
            str(write_spec(tmp_path / "s.yaml", spec)),
            "--data",
            str(tiny_log),
            "--out",
            str(tmp_path / "run"),
            "--no-progress",
        ],
    )
    assert result.exit_code == 2
    assert "user_activty" in result.output and "fix" in result.output


def test_resuming_from_a_checkpoint_gives_the_uninterrupted_model(tiny_log: Path, tmp_path: Path) -> None:
    from app.offline.training.spec import TrainSpec
    from app.offline.training.train import train_spec

    def spec(epochs: int, **extra: Any) -> TrainSpec:
        return TrainSpec.model_validate(tiny_spec(epochs=epochs, early_stopping_patience=5, **extra))

    train_spec(spec(3), tiny_log, tmp_path / "straight", show_progress=False)
    train_spec(spec(2), tiny_log, tmp_path / "resumed", show_progress=False)
    resumed = train_spec(spec(3), tiny_log, tmp_path / "resumed", show_progress=False, resume=True)
    assert [e["epoch"] for e in resumed.report["history"]] == [1, 2, 3]
    a = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "model.pt", weights_only=True)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-7, msg=name)
    with pytest.raises(ArtifactError, match="another spec"):
        train_spec(spec(4, learning_rate=0.5), tiny_log, tmp_path / "resumed", show_progress=False, resume=True)
