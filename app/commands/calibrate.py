"""`fusionrank calibrate fit|apply|report` (offline, no torch)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from app.artifacts.calibration import CalibrationFile
    from app.artifacts.manifest import ModelManifest

from app.commands.common import (
    EngineOption,
    SparkConfOption,
    SparkMasterOption,
    TableOption,
    bundle_manifest,
    check_engine,
    local_input,
    run_offline,
)

__all__ = ["calibrate"]

calibrate = typer.Typer(
    name="calibrate", no_args_is_help=True, help="Fit, apply and report per-task calibration (offline, no torch).",
)


@calibrate.command("fit")
def calibrate_fit(
    predictions: Annotated[Path | None, typer.Option(help="Parquet or CSV: logit_<task> or p_<task>, label_<task>,"
                                                           " optional mask_<task>, segment columns (with --engine"
                                                           " spark: a Parquet file or directory)")] = None,
    out: Annotated[Path | None, typer.Option(help="calibration file to write; with --model defaults to"
                                                  " <model>/calibration/<version>.json")] = None,
    segment: Annotated[list[str] | None, typer.Option(help="segment feature column (repeat; applied in order)")] = None,
    method: Annotated[str, typer.Option(help="global calibrator: platt, temperature, isotonic or histogram")] = "platt",
    model: Annotated[Path | None, typer.Option(help="model bundle dir (model_store/<name>/<version>) to tie the"
                                                    " calibration to")] = None,
    version: Annotated[str | None, typer.Option(help="calibration version (default: UTC timestamp)")] = None,
    holdout: Annotated[float, typer.Option(min=0.01, max=0.9, help="held-out fraction for metrics")] = 0.2,
    holdout_key: Annotated[str, typer.Option(help="integer column hashed for the split ('' = row)")] = "group_id",
    holdout_split: Annotated[str | None, typer.Option(help="hold out the rows whose `split` column (from"
                                                            " `fusionrank predict`) is this, e.g. test")] = None,
    shrinkage: Annotated[float, typer.Option(min=0.0, help="segment shrinkage pseudo-count")] = 30.0,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
    engine: EngineOption = "local",
    table: TableOption = None,
    spark_master: SparkMasterOption = None,
    spark_conf: SparkConfOption = None,
) -> None:
    """Fit a calibration file per task (global calibrator + segment corrections) from a predictions file."""

    def action() -> None:
        import json
        from datetime import UTC, datetime

        from rich.console import Console

        from app.artifacts.loading import check_calibration_for
        from app.errors import ArtifactError
        from app.offline.calibration import METHODS, FitConfig, PredictionFile, fit_predictions

        if method not in METHODS:
            raise ArtifactError("--method", "", f"unknown method {method!r}", f"use one of {list(METHODS)}")
        cal_version = version or datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        manifest = bundle_manifest(model)
        if out is None and model is None:
            raise ArtifactError("--out", "", "no destination", "give --out FILE, or --model BUNDLE_DIR")
        destination = out if out is not None else Path(str(model)) / "calibration" / f"{cal_version}.json"
        config = FitConfig(method=method, segments=tuple(segment or ()), shrinkage_prior=shrinkage)
        if check_engine(engine, predictions, table) == "spark":
            if holdout_split is not None:
                raise ArtifactError("--holdout-split", "", "not available with --engine spark", "use --holdout")
            from app.offline.spark import SparkInput, fit_on_spark, read_input, spark_session

            source = SparkInput(predictions, table)
            with spark_session(spark_master, spark_conf or (), show_progress=progress) as spark:
                outcome = fit_on_spark(read_input(spark, source), config, version=cal_version, origin=source.origin,
                                       name=source.name, manifest=manifest, holdout_fraction=holdout,
                                       holdout_key=holdout_key or None)
        else:
            outcome = fit_predictions(PredictionFile(local_input(predictions)), config, version=cal_version,
                                      manifest=manifest, holdout_fraction=holdout, holdout_key=holdout_key or None,
                                      show_progress=progress, holdout_split=holdout_split)
        if manifest is not None:
            check_calibration_for(outcome.calibration, manifest, destination)
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(json.dumps(outcome.calibration.model_dump(mode="json"), indent=2) + "\n",
                               encoding="utf-8")
        _print_fit(Console(), outcome.calibration, config.segments)
        Console().print(f"{outcome.rows} rows, {outcome.held_out_rows} held out (split by"
                        f" {outcome.split_key or 'row number'}); wrote {destination}")

    run_offline(action)


def _print_fit(console: Any, calibration: Any, segments: tuple[str, ...]) -> None:
    from rich.table import Table

    table = Table(title=f"calibration {calibration.version} on held-out rows")
    columns = ["task", "positives", "ratio raw", "ratio cal.", "ECE raw", "ECE cal."]
    columns += [f"F-RCE {f} raw → cal." for f in segments]
    for column in columns:
        table.add_column(column)
    for task, cal in calibration.tasks.items():
        b, a = cal.metrics.before, cal.metrics.after
        row = [task, f"{b['positives']:.0f}", f"{b['calibration_ratio']:.3f}", f"{a['calibration_ratio']:.3f}",
               f"{b['ece']:.5f}", f"{a['ece']:.5f}"]
        row += [f"{b[f'field_rce.{f}']:.3f} → {a[f'field_rce.{f}']:.3f}" for f in segments]
        table.add_row(*row)
    console.print(table)


@calibrate.command("apply")
def calibrate_apply(
    calibration: Annotated[Path, typer.Option(help="calibration file")],
    predictions: Annotated[Path, typer.Option(help="Parquet or CSV with logit_<task> or p_<task> and segment columns")],
    out: Annotated[Path, typer.Option(help="output file (.parquet or .csv): the input plus p_<task> columns")],
    model: Annotated[Path | None, typer.Option(help="model bundle dir: checks the file, uses its vocabularies")] = None,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Write calibrated p_<task> columns beside the input, with the service's own apply code."""

    def action() -> None:
        from app.offline.calibration import PredictionFile, apply_predictions

        cal, manifest = _checked(calibration, model)
        rows = apply_predictions(cal, PredictionFile(predictions), out, manifest=manifest, show_progress=progress)
        typer.echo(f"wrote {rows} rows with p_{{task}} for {', '.join(cal.tasks)} to {out}")

    run_offline(action)


@calibrate.command("report")
def calibrate_report(
    calibration: Annotated[Path, typer.Option(help="calibration file")],
    out: Annotated[Path, typer.Option(help="folder for report.md and the reliability PNGs")],
    predictions: Annotated[Path | None, typer.Option(help="Parquet or CSV with raw predictions, labels and"
                                                           " segments (with --engine spark: a Parquet file or"
                                                           " directory)")] = None,
    model: Annotated[Path | None, typer.Option(help="model bundle dir: checks the file, uses its vocabularies")] = None,
    segment: Annotated[list[str] | None, typer.Option(help="extra segment column to tabulate (repeat)")] = None,
    buckets: Annotated[int, typer.Option(min=2, max=100, help="equal-mass prediction buckets")] = 10,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
    engine: EngineOption = "local",
    table: TableOption = None,
    spark_master: SparkMasterOption = None,
    spark_conf: SparkConfOption = None,
) -> None:
    """Bucket and segment tables before/after, reliability diagrams, as a markdown report."""

    def action() -> None:
        from app.offline.calibration import PredictionFile, write_report

        cal, manifest = _checked(calibration, model)
        if check_engine(engine, predictions, table) == "spark":
            from app.offline.spark import SparkInput, read_input, report_on_spark, spark_session

            source = SparkInput(predictions, table)
            with spark_session(spark_master, spark_conf or (), show_progress=progress) as spark:
                path = report_on_spark(cal, read_input(spark, source), out, origin=source.origin, manifest=manifest,
                                       extra_segments=tuple(segment or ()), buckets=buckets)
        else:
            path = write_report(cal, PredictionFile(local_input(predictions)), out, manifest=manifest,
                                extra_segments=tuple(segment or ()), buckets=buckets, show_progress=progress)
        typer.echo(f"wrote {path}")

    run_offline(action)


def _checked(calibration: Path, model: Path | None) -> tuple[CalibrationFile, ModelManifest | None]:
    """The calibration file, and with `--model` the bundle's manifest it has been checked against."""
    from app.artifacts.loading import check_calibration_for, load_calibration

    cal = load_calibration(calibration)
    manifest = bundle_manifest(model)
    if manifest is not None:
        check_calibration_for(cal, manifest, calibration)
    return cal, manifest
