"""`calibrate fit --engine spark` gives the local file: same statistics, same parameters, same metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.offline.calibration import FitConfig, PredictionFile, collect, fit_predictions
from app.offline.calibration.source import find_tasks
from app.offline.spark import collect_on_spark, fit_on_spark
from tests.offline.calibration.data import write_predictions
from tests.offline.spark.compare import max_number_diff

pytestmark = pytest.mark.spark

SEGMENTS = ("user_tenure", "item_type")


@pytest.fixture(scope="module")
def predictions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_predictions(tmp_path_factory.mktemp("spark") / "predictions.parquet", 24_000, seed=3)


def test_spark_statistics_equal_the_local_ones(spark: Any, predictions: Path) -> None:
    source = PredictionFile(predictions)
    tasks = source.tasks(need_labels=True)
    local = collect(source, tasks, SEGMENTS, holdout_fraction=0.2, show_progress=False)
    frame = spark.read.parquet(str(predictions)).repartition(3)  # several partials to merge
    remote = collect_on_spark(frame, find_tasks(frame.columns, "x", need_labels=True), SEGMENTS,
                              holdout_fraction=0.2, key="group_id", origin="x")
    assert (remote.rows, remote.held_out_rows) == (local.rows, local.held_out_rows)
    assert sorted(remote.stats.cells) == sorted(local.stats.cells)
    order = [local.stats.cells.index(c) for c in remote.stats.cells]
    for task in ("click", "purchase"):
        mine, theirs = remote.stats.per_task[task], local.stats.per_task[task]
        np.testing.assert_array_equal(mine.weight, theirs.weight[order])
        np.testing.assert_allclose(mine.label_sum, theirs.label_sum[order], rtol=0, atol=1e-9)
        np.testing.assert_allclose(mine.logit_sum, theirs.logit_sum[order], rtol=1e-12, atol=1e-9)
        held_l, held_r = local.held_out[task], remote.held_out[task]
        # the same held-out rows (the shuffle above lost the input order: compare them sorted)
        rows_l = sorted(zip(held_l.z.tolist(), held_l.y.tolist(), [local.stats.cells[i] for i in held_l.cell],
                            strict=True))
        rows_r = sorted(zip(held_r.z.tolist(), held_r.y.tolist(), [remote.stats.cells[i] for i in held_r.cell],
                            strict=True))
        assert rows_r == rows_l


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_spark_fit_writes_the_local_calibration_file(spark: Any, predictions: Path, method: str) -> None:
    config = FitConfig(method=method, segments=SEGMENTS)
    local = fit_predictions(PredictionFile(predictions), config, version="v1", show_progress=False)
    remote = fit_on_spark(spark.read.parquet(str(predictions)), config, version="v1", origin=str(predictions),
                          name=predictions.name)
    a = local.calibration.model_dump(mode="json")
    b = remote.calibration.model_dump(mode="json")
    a.pop("created_at"), b.pop("created_at")
    assert max_number_diff(a, b) < 1e-9
    assert remote.calibration.tasks["click"].segments  # the comparison covered segment corrections too


def test_spark_split_is_the_local_split_for_every_key(spark: Any) -> None:
    import pyarrow as pa

    from app.offline.calibration.collect import holdout_mask
    from app.offline.spark.split import with_holdout

    rng = np.random.default_rng(1)
    edges = [0, 1, -1, 2**31 - 1, -(2**31), 2**32, 2**63 - 1, -(2**63)]
    keys = np.r_[edges, rng.integers(-(2**63), 2**63 - 1, 4000, dtype=np.int64)].astype(np.int64)
    frame = spark.createDataFrame(pa.table({"k": keys}))  # Arrow: no per-row Python serialisation
    for fraction in (0.05, 0.5):
        held = [row[0] for row in with_holdout(frame, "k", fraction, "held").select("held").collect()]
        np.testing.assert_array_equal(np.array(held), holdout_mask(keys, fraction))


def test_spark_refuses_bad_rows_naming_the_column(spark: Any, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from app.errors import ArtifactError

    table = pa.table({"group_id": np.arange(50, dtype=np.int64), "logit_click": np.zeros(50),
                      "label_click": np.r_[np.zeros(49), 2.0]})
    pq.write_table(table, tmp_path / "bad.parquet")
    with pytest.raises(ArtifactError, match="not 0 or 1") as refused:
        fit_on_spark(spark.read.parquet(str(tmp_path / "bad.parquet")), FitConfig(), version="v", origin="bad",
                     name="bad")
    assert "group_id = 49" in str(refused.value)  # the bad row, named by its key
    probabilities = pa.table({"group_id": np.arange(50, dtype=np.int64), "p_click": np.r_[np.full(49, 0.5), 1.5],
                              "label_click": np.zeros(50)})
    pq.write_table(probabilities, tmp_path / "p.parquet")
    with pytest.raises(ArtifactError, match=r"1\.5 is not a probability"):
        fit_on_spark(spark.read.parquet(str(tmp_path / "p.parquet")), FitConfig(), version="v", origin="p", name="p")
    null_key = table.set_column(0, "group_id", pa.array([None, *range(1, 50)], type=pa.int64()))
    pq.write_table(null_key.set_column(2, "label_click", pa.array(np.zeros(50))), tmp_path / "null.parquet")
    with pytest.raises(ArtifactError, match="key is null in 1 rows"):
        fit_on_spark(spark.read.parquet(str(tmp_path / "null.parquet")), FitConfig(), version="v", origin="null",
                     name="null")
    no_key = table.drop(["group_id"])
    pq.write_table(no_key, tmp_path / "nokey.parquet")
    with pytest.raises(ArtifactError, match="integer key"):
        fit_on_spark(spark.read.parquet(str(tmp_path / "nokey.parquet")), FitConfig(), version="v", origin="nokey",
                     name="nokey")


def test_cli_engine_spark_writes_the_same_file(spark: Any, predictions: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from app.cli import app

    runner = CliRunner()
    files = {}
    for engine in ("local", "spark"):
        out = tmp_path / f"{engine}.json"
        args = ["calibrate", "fit", "--predictions", str(predictions), "--out", str(out), "--version", "v",
                "--segment", "user_tenure", "--no-progress", "--engine", engine, "--min-holdout-positives", "0"]
        if engine == "spark":
            args += ["--spark-master", "local[2]", "--spark-conf", "spark.ui.enabled=false"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        files[engine] = json.loads(out.read_text())
        files[engine].pop("created_at")
    assert max_number_diff(files["local"], files["spark"]) < 1e-9
