"""Report tables are whole when output is not a terminal (a pipe, a file, a CI log).

rich squeezes a table into 80 columns when it cannot see a terminal, and cut cells read `1.494e…`;
`report_console` prints to a wide console instead. CliRunner's output is not a terminal, like a pipe.
"""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from app.cli import app as cli
from tests.offline.conftest import tiny_log, tiny_spec, write_spec

__all__ = ["tiny_log"]  # the fixture, imported for the tests below


def _rows(output: str, first: str) -> list[list[str]]:
    """Cells of the table rows starting with `first` (rich's box-drawing separators)."""
    return [
        [cell.strip() for cell in line.strip().strip("│┃").split("│")]
        for line in output.splitlines()
        if line.strip().strip("│┃").strip().startswith(first)
    ]


def test_train_and_calibrate_tables_are_not_cut_without_a_terminal(tiny_log: Path, tmp_path: Path) -> None:
    spec = tiny_spec(model={"kind": "gbt", "gbt": {"rounds": 20}})
    spec["training"].pop("losses", None)
    path = write_spec(tmp_path / "spec.yaml", spec)
    runner = CliRunner()
    run = tmp_path / "run"
    trained = runner.invoke(
        cli, ["train", "--spec", str(path), "--data", str(tiny_log), "--out", str(run), "--no-progress"],
        env={"COLUMNS": "80", "TERM": "dumb"},
    )
    assert trained.exit_code == 0, trained.output
    assert "…" not in trained.output
    report = json.loads((run / "report.json").read_text())
    (click,) = _rows(trained.output, "click")
    overall = report["tasks"]["click"]["overall"]
    assert click[:4] == ["click", str(int(overall["count"])), f"{overall['auc']:.4g}", f"{overall['logloss']:.4g}"]
    assert len(click) == 8  # task + the seven metrics, none dropped

    predictions = tmp_path / "predictions.parquet"
    predicted = runner.invoke(cli, ["predict", "--run", str(run), "--data", str(tiny_log), "--out", str(predictions)])
    assert predicted.exit_code == 0, predicted.output
    fitted = runner.invoke(
        cli,
        ["calibrate", "fit", "--predictions", str(predictions), "--out", str(tmp_path / "calibration.json"),
         "--segment", "item_type", "--segment", "user_tenure", "--holdout-split", "test",
         "--min-holdout-positives", "0"],
        env={"COLUMNS": "80", "TERM": "dumb"},
    )
    assert fitted.exit_code == 0, fitted.output
    assert "…" not in fitted.output
    (row,) = _rows(fitted.output, "click")
    assert len(row) == 8 and row[2].count("[") == 1  # ratio with its whole interval, both F-RCE columns
