"""`fusionrank calibrate fit | apply | report` on small predictions files, and their input errors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from app.artifacts import check_calibration_for, load_calibration, load_manifest
from app.cli import app as cli
from app.offline.calibration import OfflineCalibration, PredictionFile, fit_predictions, holdout_mask
from app.offline.calibration.fit import FitConfig
from app.serving.calibration import sigmoid
from tests.conftest import BUNDLE
from tests.offline.calibration.data import predictions_columns, write_predictions

SEGMENTS = ["--segment", "user_tenure", "--segment", "item_type"]


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, ["calibrate", *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def predictions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_predictions(tmp_path_factory.mktemp("cal") / "predictions.parquet", 60_000)


@pytest.fixture(scope="module")
def fitted(predictions: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fit") / "cal.json"
    output = _invoke("fit", "--predictions", str(predictions), *SEGMENTS, "--version", "7", "--out", str(out),
                     "--no-progress")
    assert "held out (split by group_id)" in output
    return out


def test_fit_writes_an_offline_file_that_repairs_overall_and_segment_calibration(fitted: Path) -> None:
    calibration = load_calibration(fitted)
    assert calibration.model is None and calibration.version == "7"
    assert set(calibration.tasks) == {"click", "purchase"}
    for task in calibration.tasks.values():
        before, after = task.metrics.before, task.metrics.after
        assert abs(before["calibration_ratio"] - 1) > 0.1
        assert 0.95 <= after["calibration_ratio"] <= 1.05
        for feature in ("user_tenure", "item_type"):
            assert after[f"field_rce.{feature}"] <= before[f"field_rce.{feature}"] / 2
        assert [s.feature for s in task.segments] == ["user_tenure", "item_type"]
        assert sum(task.reference.fractions) == pytest.approx(1.0)
    new = calibration.tasks["click"].segments[0].values["new"]
    assert new.b < 0  # the generator makes new users click less than the raw logit says


@pytest.mark.parametrize("method", ["temperature", "isotonic", "histogram"])
def test_every_method_fits_from_the_cli(predictions: Path, tmp_path: Path, method: str) -> None:
    out = tmp_path / "cal.json"
    _invoke("fit", "--predictions", str(predictions), "--method", method, "--out", str(out), "--no-progress")
    task = load_calibration(out).tasks["click"]
    assert task.calibrator.method == method and task.segments == []


def test_fit_with_a_model_ties_the_file_to_the_bundle(tmp_path: Path) -> None:
    bundle = tmp_path / "demo_ranker" / "1"
    shutil.copytree(BUNDLE, bundle)
    columns = predictions_columns(40_000, seed=4)
    rng = np.random.default_rng(4)
    for task in ("hide", "report"):  # the demo model has four tasks
        columns[f"logit_{task}"] = rng.normal(-4, 1, 40_000)
        columns[f"label_{task}"] = (rng.random(40_000) < sigmoid(columns[f"logit_{task}"])).astype(np.int8)
    columns["item_type"] = np.where(columns["item_type"] == "live", "podcast", columns["item_type"])  # not in vocab
    import pyarrow as pa

    path = tmp_path / "p.parquet"
    pq.write_table(pa.table(columns), path)
    _invoke("fit", "--predictions", str(path), "--model", str(bundle), *SEGMENTS, "--version", "3", "--no-progress")
    written = bundle / "calibration" / "3.json"
    calibration = load_calibration(written)
    manifest = load_manifest(bundle)
    check_calibration_for(calibration, manifest, written)
    assert calibration.model is not None and calibration.model.sha256 == manifest.model_sha256
    item_type = calibration.tasks["click"].segments[1].values
    assert "podcast" not in item_type and "video" in item_type  # out of vocabulary: global fit only


def test_apply_writes_calibrated_columns_with_the_serving_code(fitted: Path, predictions: Path, tmp_path: Path) -> None:
    out = tmp_path / "applied.parquet"
    _invoke("apply", "--calibration", str(fitted), "--predictions", str(predictions), "--out", str(out),
            "--no-progress")
    table = pq.read_table(out)
    source = pq.read_table(predictions)
    assert table.num_rows == source.num_rows and set(source.column_names) < set(table.column_names)
    calibration = load_calibration(fitted)
    vocab = {f: sorted(TENURE) for f, TENURE in (("user_tenure", ["new", "casual", "regular", "power"]),
                                                   ("item_type", ["video", "article", "product", "live"]))}
    applier = OfflineCalibration(calibration, ["click", "purchase"], vocab)
    codes = np.stack([applier.codes(f, source.column(f).to_pylist()) for f in applier.features], axis=1)
    logits = np.stack([source.column(f"logit_{t}").to_numpy() for t in ("click", "purchase")], axis=1)
    expected = applier.apply(logits, codes)
    np.testing.assert_allclose(table.column("p_click").to_numpy(), expected[:, 0], rtol=0, atol=1e-15)
    # by hand: global Platt, then the two segment corrections in order
    cal = calibration.tasks["purchase"]
    row = 0
    z = cal.calibrator.a * logits[row, 1] + cal.calibrator.b  # type: ignore[union-attr]
    for seg in cal.segments:
        params = seg.values[str(source.column(seg.feature)[row])]
        z = params.a * z + params.b
    assert table.column("p_purchase")[row].as_py() == pytest.approx(float(sigmoid(np.array([z]))[0]), abs=1e-15)


def test_csv_input_gives_the_same_fit_as_parquet(tmp_path: Path) -> None:
    parquet = write_predictions(tmp_path / "p.parquet", 20_000, seed=9)
    csv = write_predictions(tmp_path / "p.csv", 20_000, seed=9)
    config = FitConfig(segments=("user_tenure",))
    a = fit_predictions(PredictionFile(parquet), config, version="1", show_progress=False).calibration
    b = fit_predictions(PredictionFile(csv), config, version="1", show_progress=False).calibration
    for task in a.tasks:  # CSV stores floats as text: equal up to the last digits
        pa_, pb = a.tasks[task].calibrator, b.tasks[task].calibrator
        assert (pa_.a, pa_.b) == pytest.approx((pb.a, pb.b), rel=1e-9)  # type: ignore[union-attr]
        assert a.tasks[task].metrics.after == pytest.approx(b.tasks[task].metrics.after, rel=1e-9)


def test_report_writes_tables_and_reliability_pngs(fitted: Path, predictions: Path, tmp_path: Path) -> None:
    _invoke("report", "--calibration", str(fitted), "--predictions", str(predictions), "--out", str(tmp_path))
    text = (tmp_path / "report.md").read_text()
    assert "| bucket | pred range | count | avg(pred) | avg(label) | positives |" in text
    assert "### click: by user_tenure" in text and "| new |" in text
    for task in ("click", "purchase"):
        for stage in ("before", "after"):
            png = tmp_path / f"reliability_{task}_{stage}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"({png.name})" in text


def test_holdout_split_is_by_group_and_deterministic() -> None:
    groups = np.repeat(np.arange(5000), 20)
    held = holdout_mask(groups, 0.2)
    assert held.mean() == pytest.approx(0.2, abs=0.02)
    assert np.all(held.reshape(-1, 20).all(axis=1) | ~held.reshape(-1, 20).any(axis=1))
    np.testing.assert_array_equal(held, holdout_mask(groups, 0.2))


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        ({"label_click": np.full(3000, 2, dtype=np.int8)}, "label 2.0 is not 0 or 1 (fix: use 0/1 labels"),
        ({"label_click": None}, "label_click: column logit_click has no label column"),
        ({"user_tenure": None}, "segment column 'user_tenure' is missing"),
        ({"group_id": np.full(3000, 0.5)}, "group_id: hold-out key column has type double"),
    ],
)
def test_bad_input_is_refused_naming_the_column(tmp_path: Path, change: dict[str, object], expect: str) -> None:
    import pyarrow as pa

    columns = predictions_columns(3000)
    for name, value in change.items():
        if value is None:
            del columns[name]
        else:
            columns[name] = value  # type: ignore[assignment]
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table(columns), path)
    result = CliRunner().invoke(cli, ["calibrate", "fit", "--predictions", str(path), "--segment", "user_tenure",
                                      "--out", str(tmp_path / "c.json"), "--no-progress"])
    assert result.exit_code == 2
    assert expect in result.output and str(path) in result.output
    assert not (tmp_path / "c.json").exists()


def test_unknown_method_and_missing_destination_are_refused(predictions: Path) -> None:
    result = CliRunner().invoke(cli, ["calibrate", "fit", "--predictions", str(predictions), "--method", "magic",
                                      "--out", "x.json"])
    shown = " ".join(result.output.replace("│", " ").split())  # the usage error is drawn in a box
    assert result.exit_code == 2 and "'magic' is not one of 'platt', 'temperature', 'isotonic'" in shown
    result = CliRunner().invoke(cli, ["calibrate", "fit", "--predictions", str(predictions)])
    assert result.exit_code == 2 and "give --out FILE, or --model BUNDLE_DIR" in result.output


def test_calibration_file_is_valid_json(fitted: Path) -> None:
    json.loads(fitted.read_text())


def test_calibrate_runs_without_importing_torch(predictions: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys; from typer.testing import CliRunner; from app.cli import app; "
        f"r = CliRunner().invoke(app, ['calibrate', 'fit', '--predictions', {str(predictions)!r}, "
        f"'--segment', 'user_tenure', '--out', {str(tmp_path / 'c.json')!r}, '--no-progress']); "
        "assert r.exit_code == 0, r.output; "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_string_keys_split_by_group_whatever_the_batch() -> None:
    from app.offline.calibration.collect import string_keys

    groups = np.array([f"req-{i // 20:05d}" for i in range(100_000)], dtype=object)
    held = holdout_mask(string_keys(groups), 0.2)
    assert held.mean() == pytest.approx(0.2, abs=0.02)
    assert np.all(held.reshape(-1, 20).all(axis=1) | ~held.reshape(-1, 20).any(axis=1))
    # a key hashes the same next to longer or shorter strings (byte positions past its end are skipped)
    alone = string_keys(np.array(["req-00001"], dtype=object))
    mixed = string_keys(np.array(["a much longer request id", "req-00001", None], dtype=object))
    assert alone[0] == mixed[1] and mixed[2] == string_keys(np.array([""], dtype=object))[0]


def test_fit_with_string_group_ids_and_with_holdout_zero(tmp_path: Path) -> None:
    import pyarrow as pa

    columns = predictions_columns(3000)
    columns["group_id"] = np.array([f"g{g}" for g in columns["group_id"]], dtype=object)
    path = tmp_path / "strings.parquet"
    pq.write_table(pa.table(columns), path)
    split = fit_predictions(PredictionFile(path), FitConfig(), version="1", show_progress=False,
                            holdout_fraction=0.3, min_held_out_positives=5)
    assert 0 < split.held_out_rows < 3000 and split.split_key == "group_id"
    assert split.calibration.tasks["click"].metrics.after
    result = CliRunner().invoke(cli, ["calibrate", "fit", "--predictions", str(path), "--holdout", "0",
                                      "--out", str(tmp_path / "all.json"), "--no-progress"])
    assert result.exit_code == 0, result.output
    everything = load_calibration(tmp_path / "all.json")
    assert not everything.tasks["click"].metrics.before and "no held-out metrics" in (everything.notes or "")


def test_a_held_out_table_too_small_to_mean_anything_is_refused(tmp_path: Path) -> None:
    path = write_predictions(tmp_path / "p.parquet", 3000)
    result = CliRunner().invoke(cli, ["calibrate", "fit", "--predictions", str(path), "--holdout", "0.02",
                                      "--out", str(tmp_path / "c.json"), "--no-progress"])
    assert result.exit_code == 2
    assert re.search(r"task '(click|purchase)' has \d+ positives in the \d+ held-out", result.output)
    assert "fewer than 30" in result.output and "--holdout 0" in result.output
