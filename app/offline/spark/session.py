"""Start (or join) a Spark session for an offline command and read its input; pyspark is imported here only.

`--spark-master` picks the cluster (`local[2]`, `spark://host:7077`, `k8s://...`, `yarn`); without it a
command started by `spark-submit` joins the session spark-submit configured, and a plain command runs
`local[*]`. `--spark-conf key=value` (repeatable) passes any `spark.*` setting through unchanged. The
Python workers run the same interpreter as the driver unless `spark.pyspark.python` (or
PYSPARK_PYTHON) says otherwise, so the workers import the very same `app` package.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from app.errors import ArtifactError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["SparkInput", "parse_spark_conf", "quiet_settings", "read_input", "spark_session", "start_session"]

INSTALL_FIX = "pip install 'fusionrank[spark]' and a Java 17 runtime (scripts/java.sh installs one)"
LOG4J2_PROPERTIES = Path(__file__).with_name("log4j2.properties")


def parse_spark_conf(items: Sequence[str]) -> dict[str, str]:
    """["spark.executor.memory=4g", ...] -> {"spark.executor.memory": "4g"}; only spark.* keys."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.startswith("spark.") or not value:
            raise ArtifactError("--spark-conf", item, "not a spark.<key>=<value> setting",
                                "write e.g. --spark-conf spark.executor.memory=4g")
        out[key] = value
    return out


def quiet_settings(conf: Mapping[str, str], *, show_progress: bool) -> dict[str, str]:
    """`conf` plus the console defaults of a fusionrank command; a key the user gave keeps the user's value.

    Spark's log goes through `log4j2.properties` beside this module (errors only): its start-up WARN
    lines (native Hadoop libraries, loopback address, default log level) are not for the command's
    user. Spark's console progress bars are off when the command's progress is (`--no-progress`).
    """
    settings = dict(conf)
    if not show_progress:
        settings.setdefault("spark.ui.showConsoleProgress", "false")
    options = settings.get("spark.driver.extraJavaOptions", "")
    if "log4j2.configurationFile" not in options:
        ours = shlex.quote(f"-Dlog4j2.configurationFile={LOG4J2_PROPERTIES}")
        settings["spark.driver.extraJavaOptions"] = f"{ours} {options}".strip()
    return settings


def start_session(
    master: str | None, conf: Mapping[str, str], *, app_name: str = "fusionrank", show_progress: bool = True,
) -> SparkSession:
    """A SparkSession with `conf` applied; see the module docstring for how the master is chosen."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ArtifactError("--engine", "spark", "the Spark engine needs pyspark", INSTALL_FIX) from None
    builder = SparkSession.builder.appName(app_name)
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ  # launched by spark-submit: its settings rule
    if master is not None:
        builder = builder.master(master)
    elif not submitted and "spark.master" not in conf:
        builder = builder.master("local[*]")
    settings = quiet_settings(conf, show_progress=show_progress)
    if not submitted and "PYSPARK_PYTHON" not in os.environ:
        # pyspark reads the workers' interpreter from the environment when the context starts.
        os.environ["PYSPARK_PYTHON"] = settings.get("spark.pyspark.python", sys.executable)
    for key, value in settings.items():
        builder = builder.config(key, value)
    try:
        return builder.getOrCreate()
    except Exception as exc:  # py4j/JVM start-up failures come as several types
        raise ArtifactError("--engine", "spark", f"cannot start Spark: {str(exc).splitlines()[0]}",
                            f"check --spark-master and Java (java -version); {INSTALL_FIX}") from None


class SparkInput:
    """The input of a Spark command: a Parquet path (file or partitioned directory) or a table name."""

    def __init__(self, path: Path | None, table: str | None) -> None:
        if (path is None) == (table is None):
            raise ArtifactError("--table", table or "", "give exactly one input for --engine spark",
                                "a Parquet path (--predictions/--logs) or --table NAME")
        self.path = path
        self.table = table

    @property
    def origin(self) -> str:
        """How errors name the input."""
        return f"table {self.table}" if self.table is not None else str(self.path)

    @property
    def name(self) -> str:
        return self.table if self.table is not None else Path(str(self.path)).name


def read_input(spark: SparkSession, source: SparkInput) -> DataFrame:
    """The input as a DataFrame (nothing is read yet beyond the schema)."""
    try:
        if source.table is not None:
            return spark.table(source.table)
        return spark.read.parquet(str(source.path))
    except Exception as exc:  # AnalysisException and friends
        raise ArtifactError(source.origin, "", f"Spark cannot read it: {str(exc).splitlines()[0]}",
                            "give a Parquet file or directory, or an existing table") from None


@contextmanager
def spark_session(
    master: str | None, conf_items: Sequence[str], *, show_progress: bool = True
) -> Iterator[SparkSession]:
    """A session for one CLI command, stopped afterwards; a session that was already running (spark-submit's,
    a notebook's) is joined and left running, with its own log and progress settings."""
    conf = parse_spark_conf(conf_items)
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ArtifactError("--engine", "spark", "the Spark engine needs pyspark", INSTALL_FIX) from None
    running = SparkSession.getActiveSession()
    spark = running if running is not None else start_session(master, conf, show_progress=show_progress)
    try:
        yield spark
    finally:
        if running is None and "PYSPARK_GATEWAY_PORT" not in os.environ:
            spark.stop()
