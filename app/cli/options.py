"""Helpers shared by the offline command groups: error reporting, engine and input options."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from app.artifacts.manifest import ModelManifest

__all__ = [
    "EngineOption",
    "NegativeOption",
    "ProgressOption",
    "SparkConfOption",
    "SparkLogsOption",
    "SparkMasterOption",
    "SparkSampleOption",
    "TableOption",
    "bundle_manifest",
    "check_engine",
    "local_input",
    "offline_errors",
    "run_offline",
]

NegativeOption = Annotated[
    list[str], typer.Option("--negative", help="a task that lowers the utility (its weight enters as -w)")
]
ProgressOption = Annotated[bool, typer.Option(help="show progress bars")]
EngineOption = Annotated[str, typer.Option(help="local (this machine, streaming) or spark (Apache Spark;"
                                                " needs the spark extra)")]
TableOption = Annotated[str | None, typer.Option(help="with --engine spark: read this table instead of a path")]
SparkMasterOption = Annotated[str | None, typer.Option(help="with --engine spark: master URL (local[2],"
                                                            " spark://host:7077, k8s://...); default local[*]")]
SparkConfOption = Annotated[list[str] | None, typer.Option(help="with --engine spark: spark.key=value (repeat)")]


@contextmanager
def offline_errors() -> Iterator[None]:
    """Bad options become usage errors; bad files (FusionrankError) a one-line message and exit 2."""
    from app.errors import FusionrankError

    try:
        yield
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    except FusionrankError as error:
        typer.echo(f"error: {error.message}", err=True)
        raise typer.Exit(2) from None


SparkLogsOption = Annotated[Path | None, typer.Option("--logs", help="logged candidate sets (.parquet or .csv; with"
                                                                   " --engine spark a Parquet file or directory)")]
SparkSampleOption = Annotated[float, typer.Option(min=0.0, max=1.0, help="with --engine spark: share of groups"
                                                                         " (by a hash of group_id) the tuner sees")]


def run_offline(action: Callable[[], None]) -> None:
    """Run an offline command; a FusionrankError becomes a one-line message and exit code 2."""
    from app.errors import FusionrankError

    try:
        action()
    except FusionrankError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(code=2) from None


def check_engine(engine: str, path: Path | None, table: str | None) -> str:
    """Validate --engine and its input options; returns the engine."""
    from app.errors import ArtifactError

    if engine not in ("local", "spark"):
        raise ArtifactError("--engine", engine, f"unknown engine {engine!r}", "use local or spark")
    if engine == "local" and table is not None:
        raise ArtifactError("--table", table, "--table needs --engine spark", "add --engine spark, or give a path")
    return engine


def local_input(path: Path | None) -> Path:
    from app.errors import ArtifactError

    if path is None:
        raise ArtifactError("--predictions", "", "no input file", "give --predictions FILE")
    return path


def bundle_manifest(model: Path | None) -> ModelManifest | None:
    from app.artifacts.loading import load_manifest

    return None if model is None else load_manifest(model)


