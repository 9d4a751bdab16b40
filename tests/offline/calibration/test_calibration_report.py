"""`calibrate report` streams its input: the same report as when it held the rows, a progress bar."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from app.artifacts import load_calibration
from app.cli import app as cli
from app.offline.calibration import PredictionFile, write_report
from tests.offline.calibration.data import report_columns

# report.md was written by the in-memory report (commit ffb5228, before streaming) from these rows
# and calibration.json, with 7 buckets; only the predictions path is replaced by a placeholder. The noise
# rows and columns (ratio intervals, Field-RCE noise floors, "within noise") were added later, by the
# streamed report; every earlier figure is unchanged.
FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "calibration_report"


def _predictions(path: Path) -> Path:
    pq.write_table(pa.table(report_columns()), path)
    return path


@pytest.mark.parametrize("batch_rows", [5000, 700])
def test_streamed_report_equals_the_in_memory_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch_rows: int
) -> None:
    # With 700-row batches, bucket edges and tie groups (logits rounded to 0.1) straddle batches.
    read = PredictionFile.batches
    monkeypatch.setattr(PredictionFile, "batches", lambda self, columns: read(self, columns, batch_rows))
    path = _predictions(tmp_path / "predictions.parquet")
    calibration = load_calibration(FIXTURE / "calibration.json")
    written = write_report(calibration, PredictionFile(path), tmp_path / "report", buckets=7, show_progress=False)
    expected = (FIXTURE / "report.md").read_text().replace("{predictions}", str(path))
    assert written.read_text() == expected


def test_report_progress_bar_is_silenced_by_no_progress(tmp_path: Path) -> None:
    path = _predictions(tmp_path / "predictions.parquet")
    args = ["calibrate", "report", "--calibration", str(FIXTURE / "calibration.json"), "--predictions", str(path)]
    shown = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "a")])
    quiet = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "b"), "--no-progress"])
    assert shown.exit_code == quiet.exit_code == 0, shown.output + quiet.output
    assert "(1/2: sums)" in shown.output and "(2/2: ranks)" in shown.output
    assert quiet.output == f"wrote {tmp_path / 'b' / 'report.md'}\n"
    assert (tmp_path / "a" / "report.md").read_text() == (tmp_path / "b" / "report.md").read_text()
