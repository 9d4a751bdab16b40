"""The Spark options are checked at the edge, before any JVM starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app
from app.errors import ArtifactError
from app.offline.spark import SparkInput, parse_spark_conf


def test_spark_conf_takes_spark_keys_only() -> None:
    assert parse_spark_conf(["spark.executor.memory=4g", "spark.sql.shuffle.partitions=8"]) == {
        "spark.executor.memory": "4g", "spark.sql.shuffle.partitions": "8"}
    for bad in ("executor.memory=4g", "spark.executor.memory", "spark.x="):
        with pytest.raises(ArtifactError, match=r"spark\.<key>=<value>"):
            parse_spark_conf([bad])


def test_spark_input_is_a_path_or_a_table() -> None:
    assert SparkInput(None, "lake.preds").origin == "table lake.preds"
    assert SparkInput(Path("/x/p.parquet"), None).name == "p.parquet"
    for path, table in ((None, None), (Path("p"), "t")):
        with pytest.raises(ArtifactError, match="exactly one input"):
            SparkInput(path, table)


def test_cli_refuses_an_unknown_engine_and_a_table_without_spark(tmp_path: Path) -> None:
    runner = CliRunner()
    unknown = runner.invoke(app, ["calibrate", "fit", "--predictions", "p.parquet", "--out", str(tmp_path / "c.json"),
                                  "--engine", "flink"])
    assert unknown.exit_code == 2 and "unknown engine 'flink'" in unknown.output
    table = runner.invoke(app, ["calibrate", "fit", "--table", "lake.preds", "--out", str(tmp_path / "c.json")])
    assert table.exit_code == 2 and "--table needs --engine spark" in table.output
    no_logs = runner.invoke(app, ["simulate", "--policy", "p.yaml", "--out", str(tmp_path)])
    assert no_logs.exit_code == 2 and "--logs" in no_logs.output
