"""The Spark options are checked at the edge, before any JVM starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app
from app.errors import ArtifactError
from app.offline.spark import SparkInput, parse_spark_conf, quiet_settings
from app.offline.spark.session import LOG4J2_PROPERTIES


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
    shown = " ".join(unknown.output.replace("│", " ").split())  # the usage error is drawn in a box
    assert unknown.exit_code == 2 and "'flink' is not one of 'local', 'spark'" in shown
    table = runner.invoke(app, ["calibrate", "fit", "--table", "lake.preds", "--out", str(tmp_path / "c.json")])
    assert table.exit_code == 2 and "--table needs --engine spark" in table.output
    no_logs = runner.invoke(app, ["simulate", "--policy", "p.yaml", "--out", str(tmp_path)])
    assert no_logs.exit_code == 2 and "--logs" in no_logs.output


def test_quiet_settings_silence_spark_unless_the_user_says_otherwise() -> None:
    quiet = quiet_settings({}, show_progress=False)
    assert quiet["spark.ui.showConsoleProgress"] == "false"
    assert f"-Dlog4j2.configurationFile={LOG4J2_PROPERTIES}" in quiet["spark.driver.extraJavaOptions"]
    assert LOG4J2_PROPERTIES.is_file() and "rootLogger.level = error" in LOG4J2_PROPERTIES.read_text()
    assert "spark.ui.showConsoleProgress" not in quiet_settings({}, show_progress=True)  # Spark's own bars
    mine = quiet_settings({"spark.ui.showConsoleProgress": "true", "spark.driver.extraJavaOptions": "-Xss4m"},
                          show_progress=False)
    assert mine["spark.ui.showConsoleProgress"] == "true"
    assert mine["spark.driver.extraJavaOptions"].endswith(" -Xss4m")
    own_log = "-Dlog4j2.configurationFile=/etc/spark/log4j2.properties"
    assert quiet_settings({"spark.driver.extraJavaOptions": own_log}, show_progress=True)[
        "spark.driver.extraJavaOptions"] == own_log
