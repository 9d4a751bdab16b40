"""`calibrate report --engine spark` writes the local report: the same tables, the same PNGs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from app.artifacts import load_calibration
from app.cli import app
from app.offline.calibration import PredictionFile, write_report
from app.offline.spark import report_on_spark
from tests.offline.calibration.data import report_columns

pytestmark = pytest.mark.spark

# The golden report of tests/offline/calibration/test_calibration_report.py: ties across bucket edges, null segments.
FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "calibration_report"
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def _tables(report: str) -> tuple[list[str], list[float]]:
    """The report's text with every number taken out, and the numbers."""
    return NUMBER.split(report), [float(n) for n in NUMBER.findall(report)]


@pytest.fixture(scope="module")
def predictions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "predictions.parquet"
    pq.write_table(pa.table(report_columns()), path, row_group_size=1700)  # several row groups: input order kept
    return path


def test_spark_report_tables_equal_the_local_ones(spark: Any, predictions: Path, tmp_path: Path) -> None:
    calibration = load_calibration(FIXTURE / "calibration.json")
    local = write_report(calibration, PredictionFile(predictions), tmp_path / "local", buckets=7, show_progress=False)
    frame = spark.read.parquet(str(predictions))
    remote = report_on_spark(calibration, frame, tmp_path / "spark", origin=str(predictions), buckets=7)
    text_l, numbers_l = _tables(local.read_text())
    text_r, numbers_r = _tables(remote.read_text())
    assert text_r == text_l
    assert numbers_r == pytest.approx(numbers_l, rel=1e-9, abs=1e-12)
    golden = (FIXTURE / "report.md").read_text().replace("{predictions}", str(predictions))
    assert remote.read_text() == golden  # and, printed, the in-memory report itself
    for png in sorted(p.name for p in (tmp_path / "local").glob("*.png")):
        assert (tmp_path / "spark" / png).read_bytes() == (tmp_path / "local" / png).read_bytes(), png


def test_cli_report_engine_spark(spark: Any, predictions: Path, tmp_path: Path) -> None:
    args = ["calibrate", "report", "--calibration", str(FIXTURE / "calibration.json"), "--predictions",
            str(predictions), "--buckets", "7", "--no-progress"]
    local = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "local")])
    remote = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "spark"), "--engine", "spark"])
    assert local.exit_code == remote.exit_code == 0, local.output + remote.output
    assert (tmp_path / "spark" / "report.md").read_text() == (tmp_path / "local" / "report.md").read_text()


def test_spark_report_names_a_bad_row(spark: Any, tmp_path: Path) -> None:
    from app.errors import ArtifactError

    columns = report_columns(200)
    columns["label_click"] = columns["label_click"].astype(float)
    columns["label_click"][150] = 3.0
    columns["mask_click"][150] = 1
    pq.write_table(pa.table(columns), tmp_path / "bad.parquet")
    calibration = load_calibration(FIXTURE / "calibration.json")
    with pytest.raises(ArtifactError, match=r"Spark partition 0: .*row 150: label 3\.0 is not 0 or 1"):
        report_on_spark(calibration, spark.read.parquet(str(tmp_path / "bad.parquet")), tmp_path / "out",
                        origin="bad.parquet")
