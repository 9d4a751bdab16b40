"""The options that more than one command takes, declared once: typer `Annotated` aliases, the choice
enums `--help` lists, and the engine option group of the offline commands."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli.extras import require_extra
from app.cli.groups import OptionGroup

__all__ = [
    "BundleOption",
    "CalibrationMethod",
    "CalibrationOption",
    "Engine",
    "EngineOption",
    "EngineOptions",
    "LogLevel",
    "LogsOption",
    "MemoryMode",
    "ModelStoreOption",
    "NegativeOption",
    "PoliciesOption",
    "ProgressOption",
    "SparkConfOption",
    "SparkMasterOption",
    "SparkSampleOption",
    "TableOption",
    "report_console",
]


class Engine(StrEnum):
    """Where an offline command runs."""

    LOCAL = "local"  # this machine, streaming the files
    SPARK = "spark"  # Apache Spark (the spark extra and a Java 17 runtime)


class CalibrationMethod(StrEnum):
    """The global calibrator of `calibrate fit` (app.offline.calibration.METHODS; a test keeps them equal)."""

    PLATT = "platt"
    TEMPERATURE = "temperature"
    ISOTONIC = "isotonic"
    HISTOGRAM = "histogram"


class MemoryMode(StrEnum):
    """How `train` holds the log: decided from its size, re-read every epoch, or read once into memory."""

    AUTO = "auto"
    STREAM = "stream"
    MEMORY = "memory"


class LogLevel(StrEnum):
    """uvicorn's log levels."""

    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"
    DEBUG = "debug"
    TRACE = "trace"


ModelStoreOption = Annotated[Path, typer.Option(help="folder of model bundles")]
PoliciesOption = Annotated[Path, typer.Option(help="folder of policies")]
ProgressOption = Annotated[bool, typer.Option(help="show progress bars")]
CalibrationOption = Annotated[Path, typer.Option(help="calibration file")]
BundleOption = Annotated[Path | None, typer.Option(help="model bundle dir (model_store/<name>/<version>): the"
                                                         " calibration is checked against it and uses its"
                                                         " vocabularies")]
NegativeOption = Annotated[
    list[str], typer.Option("--negative", help="a task that lowers the utility (its weight enters as -w)")
]
LogsOption = Annotated[Path | None, typer.Option("--logs", help="logged candidate sets (.parquet or .csv; with"
                                                              " --engine spark a Parquet file or directory)")]
EngineOption = Annotated[Engine, typer.Option(help="local: this machine, streaming; spark: Apache Spark (needs"
                                                   " the spark extra)")]
TableOption = Annotated[str | None, typer.Option(help="with --engine spark: read this table instead of a path")]
SparkMasterOption = Annotated[str | None, typer.Option(help="with --engine spark: master URL (local[2],"
                                                            " spark://host:7077, k8s://...); default local[*]")]
SparkConfOption = Annotated[list[str] | None, typer.Option(help="with --engine spark: spark.key=value (repeat)")]
SparkSampleOption = Annotated[float, typer.Option(min=0.0, max=1.0, help="with --engine spark: share of groups"
                                                                         " (by a hash of group_id) the tuner sees")]


@dataclass(frozen=True)
class EngineOptions(OptionGroup):
    """--engine and the Spark options that go with it (calibrate fit/report, tune, simulate)."""

    engine: EngineOption = Engine.LOCAL
    table: TableOption = None
    spark_master: SparkMasterOption = None
    spark_conf: SparkConfOption = None

    def on_spark(self) -> bool:
        """True with --engine spark (after checking the spark extra is installed); refuses --table without it."""
        from app.errors import ArtifactError

        if self.engine == Engine.SPARK:
            require_extra("spark", "--engine spark")
            return True
        if self.table is not None:
            raise ArtifactError("--table", self.table, "--table needs --engine spark", "add --engine spark, or give"
                                " a path")
        return False

    @contextmanager
    def session(self, show_progress: bool) -> Iterator[Any]:
        """A Spark session on --spark-master with --spark-conf, stopped on exit."""
        from app.offline.spark import spark_session

        with spark_session(self.spark_master, self.spark_conf or (), show_progress=show_progress) as spark:
            yield spark


def report_console() -> Any:
    """A rich Console whose tables are never cut: the terminal's width, or 400 columns when output is not a
    terminal (a pipe, a file, a CI log), where rich would otherwise squeeze tables into 80 columns (`1.494e…`)."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=400)
