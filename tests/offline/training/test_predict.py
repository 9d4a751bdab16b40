"""`fusionrank predict` writes what `calibrate fit` reads, from a run or from a bundle, with the same numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from app.artifacts.loading import check_calibration_for, load_calibration, load_manifest
from app.cli import app as cli
from app.offline.training.bundle import export_run
from app.offline.training.run_folder import RunFolder
from app.offline.training.train import train_run
from tests.offline.conftest import tiny_spec, write_spec

TASKS = ["click", "purchase", "hide", "report"]


@pytest.fixture(scope="module")
def run_and_bundle(tiny_log: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(spec file, run folder, bundle folder) of a tiny model."""
    root = tmp_path_factory.mktemp("predict")
    spec = write_spec(root / "spec.yaml", tiny_spec())
    train_run(spec, tiny_log, root / "run", show_progress=False)
    export_run(root / "run", root / "model_store" / "tiny" / "1")
    return spec, root / "run", root / "model_store" / "tiny" / "1"


def test_predict_then_calibrate_fit_writes_a_calibration_the_bundle_accepts(
    run_and_bundle: tuple[Path, Path, Path], tiny_log: Path, tmp_path: Path
) -> None:
    _, run, bundle = run_and_bundle
    runner = CliRunner()
    predictions = tmp_path / "predictions.parquet"
    result = runner.invoke(cli, ["predict", "--run", str(run), "--data", str(tiny_log), "--out", str(predictions)])
    assert result.exit_code == 0, result.output
    table = pq.read_table(predictions)
    assert table.column_names[:3] == ["group_id", "candidate_id", "split"]
    assert {f"{kind}_{t}" for t in TASKS for kind in ("logit", "label", "mask")} <= set(table.column_names)
    assert set(table.column("split").to_pylist()) == {"valid", "test"}
    out = tmp_path / "calibration.json"
    result = runner.invoke(
        cli,
        [
            "calibrate",
            "fit",
            "--predictions",
            str(predictions),
            "--model",
            str(bundle),
            "--out",
            str(out),
            "--segment",
            "user_tenure",
            "--segment",
            "item_type",
            "--version",
            "2",
            "--min-holdout-positives",  # a tiny log: no report positive held out
            "0",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    calibration = load_calibration(out)
    check_calibration_for(calibration, load_manifest(bundle), out)
    assert list(calibration.tasks) == TASKS
    assert all(cal.segments for cal in calibration.tasks.values())
    # fit on the validation days, measure on the later test days (the split column predict wrote)
    result = runner.invoke(cli, [
        "calibrate", "fit", "--predictions", str(predictions), "--model", str(bundle), "--out", str(out),
        "--holdout-split", "test", "--version", "3", "--min-holdout-positives", "0", "--no-progress",
    ])
    assert result.exit_code == 0, result.output
    test_rows = table.column("split").to_pylist().count("test")
    assert f"metrics on {test_rows} held-out rows (split by split = test)" in (load_calibration(out).notes or "")


def test_a_bundle_predicts_what_its_run_predicts(
    run_and_bundle: tuple[Path, Path, Path], tiny_log: Path, tmp_path: Path
) -> None:
    spec, run, bundle = run_and_bundle
    runner = CliRunner()
    from_run, from_bundle = tmp_path / "run.parquet", tmp_path / "bundle.csv"
    args = ["predict", "--data", str(tiny_log), "--split", "test"]
    assert runner.invoke(cli, [*args, "--run", str(run), "--out", str(from_run)]).exit_code == 0
    result = runner.invoke(cli, [*args, "--model", str(bundle), "--spec", str(spec), "--out", str(from_bundle)])
    assert result.exit_code == 0, result.output
    import pyarrow.csv as pacsv

    a, b = pq.read_table(from_run), pacsv.read_csv(from_bundle)
    assert a.num_rows == b.num_rows > 0
    for name in ("group_id", "candidate_id", *(f"{k}_{t}" for t in TASKS for k in ("label", "mask"))):
        assert a.column(name).to_pylist() == b.column(name).to_pylist(), name
    for task in TASKS:  # torch vs onnxruntime: the export's parity tolerance
        np.testing.assert_allclose(
            a.column(f"logit_{task}").to_numpy(), b.column(f"logit_{task}").to_numpy(), atol=1e-4
        )
    # the run's own held-out predictions (what export calibrates on) are these rows
    saved = RunFolder(run).arrays("predictions_test")
    np.testing.assert_allclose(
        np.stack([a.column(f"logit_{t}").to_numpy() for t in TASKS], axis=1), saved["logits"], rtol=0, atol=1e-6
    )


def test_predict_names_the_missing_option(
    run_and_bundle: tuple[Path, Path, Path], tiny_log: Path, tmp_path: Path
) -> None:
    _, _, bundle = run_and_bundle
    result = CliRunner().invoke(
        cli, ["predict", "--model", str(bundle), "--data", str(tiny_log), "--out", str(tmp_path / "p.parquet")]
    )
    assert result.exit_code == 2 and "--spec" in result.output
    result = CliRunner().invoke(
        cli,
        [
            "predict",
            "--run",
            "x",
            "--model",
            str(bundle),
            "--data",
            str(tiny_log),
            "--out",
            str(tmp_path / "p.parquet"),
        ],
    )
    assert result.exit_code == 2 and "exactly one" in result.output
    assert json.loads((bundle / "manifest.json").read_text())["name"] == "tiny"
