"""`fusionrank calibrate fit|apply|report` (offline, no torch)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from app.cli.exits import user_errors
from app.cli.extras import needs_extra
from app.cli.groups import with_groups
from app.cli.options import (
    BundleOption,
    CalibrationMethod,
    CalibrationOption,
    EngineOptions,
    ProgressOption,
    report_console,
)

if TYPE_CHECKING:
    from app.artifacts.calibration import CalibrationFile
    from app.artifacts.manifest import ModelManifest

__all__ = ["calibrate_app"]

calibrate_app = typer.Typer(
    name="calibrate", no_args_is_help=True, help="Fit, apply and report per-task calibration (offline, no torch).",
)


@calibrate_app.command("fit")
@with_groups
def calibrate_fit(
    *,
    predictions: Annotated[Path | None, typer.Option(help="Parquet or CSV: logit_<task> or p_<task>, label_<task>,"
                                                           " optional mask_<task>, segment columns (with --engine"
                                                           " spark: a Parquet file or directory)")] = None,
    out: Annotated[Path | None, typer.Option(help="calibration file to write; with --model defaults to"
                                                  " <model>/calibration/<version>.json")] = None,
    segment: Annotated[list[str] | None, typer.Option(help="segment feature column (repeat; applied in order)")] = None,
    method: Annotated[CalibrationMethod, typer.Option(help="global calibrator")] = CalibrationMethod.PLATT,
    model: BundleOption = None,
    version: Annotated[str | None, typer.Option(help="calibration version (default: UTC timestamp)")] = None,
    holdout: Annotated[float, typer.Option(min=0.0, max=0.9, help="held-out fraction for metrics (0 = fit on"
                                                                  " every row, no held-out metrics)")] = 0.2,
    holdout_key: Annotated[str, typer.Option(help="integer or string column hashed for the split ('' = row)")
                           ] = "group_id",
    min_holdout_positives: Annotated[int, typer.Option(min=0, help="refuse a held-out table with fewer positives"
                                                                   " for any task (0 = no check)")] = 30,
    holdout_split: Annotated[str | None, typer.Option(help="hold out the rows whose `split` column (from"
                                                            " `fusionrank predict`) is this, e.g. test")] = None,
    shrinkage: Annotated[float, typer.Option(min=0.0, help="segment shrinkage pseudo-count")] = 30.0,
    progress: ProgressOption = True,
    engine: EngineOptions,
) -> None:
    """Fit a calibration file per task (global calibrator + segment corrections) from a predictions file."""
    import json
    from datetime import UTC, datetime

    from app.artifacts.loading import check_calibration_for
    from app.errors import ArtifactError
    from app.offline.calibration import FitConfig, PredictionFile, fit_predictions

    with user_errors():
        cal_version = version or datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        manifest = _manifest(model)
        if out is None and model is None:
            raise ArtifactError("--out", "", "no destination", "give --out FILE, or --model BUNDLE_DIR")
        destination = out if out is not None else Path(str(model)) / "calibration" / f"{cal_version}.json"
        config = FitConfig(method=method.value, segments=tuple(segment or ()), shrinkage_prior=shrinkage)
        if engine.on_spark():
            if holdout == 0:
                raise ArtifactError("--holdout", "", "0 is not available with --engine spark",
                                    "use --engine local, or a fraction > 0")
            if holdout_split is not None:
                raise ArtifactError("--holdout-split", "", "not available with --engine spark", "use --holdout")
            from app.offline.spark import SparkInput, fit_on_spark, read_input

            source = SparkInput(predictions, engine.table)
            with engine.session(progress) as spark:
                outcome = fit_on_spark(read_input(spark, source), config, version=cal_version, origin=source.origin,
                                       name=source.name, manifest=manifest, holdout_fraction=holdout,
                                       holdout_key=holdout_key or None,
                                       min_held_out_positives=min_holdout_positives)
        else:
            outcome = fit_predictions(PredictionFile(_local_input(predictions)), config, version=cal_version,
                                      manifest=manifest, holdout_fraction=holdout, holdout_key=holdout_key or None,
                                      show_progress=progress, holdout_split=holdout_split,
                                      min_held_out_positives=min_holdout_positives)
        if manifest is not None:
            check_calibration_for(outcome.calibration, manifest, destination)
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(json.dumps(outcome.calibration.model_dump(mode="json"), indent=2) + "\n",
                               encoding="utf-8")
        _print_fit(report_console(), outcome.calibration, config.segments)
        report_console().print(f"{outcome.rows} rows, {outcome.held_out_rows} held out (split by"
                        f" {outcome.split_key or 'row number'}); wrote {destination}")


def _print_fit(console: Any, calibration: Any, segments: tuple[str, ...]) -> None:
    from rich.table import Table

    table = Table(title=f"calibration {calibration.version} on held-out rows (95 % intervals; ~ = within noise)")
    columns = ["task", "positives", "ratio raw [95 %]", "ratio cal. [95 %]", "ECE raw", "ECE cal."]
    columns += [f"F-RCE {f} raw → cal. (noise)" for f in segments]
    for column in columns:
        table.add_column(column)
    if not any(cal.metrics.before for cal in calibration.tasks.values()):
        console.print(f"calibration {calibration.version}: no held-out rows (--holdout 0), no held-out metrics")
        return
    for task, cal in calibration.tasks.items():
        b, a = cal.metrics.before, cal.metrics.after
        row = [task, f"{b['positives']:.0f}", _ratio_cell(b, mark=True), _ratio_cell(a, mark=False),
               f"{b['ece']:.5f}", f"{a['ece']:.5f}"]
        for f in segments:
            noise = b.get(f"field_rce_noise.{f}", float("nan"))
            change = abs(b[f"field_rce.{f}"] - a[f"field_rce.{f}"])
            row.append(f"{b[f'field_rce.{f}']:.3f} → {a[f'field_rce.{f}']:.3f} ({noise:.3f})"
                       + (" ~" if change < noise else ""))
        table.add_row(*row)
    console.print(table)


def _ratio_cell(metrics: dict[str, float], *, mark: bool) -> str:
    """Ratio with its interval; `mark`: " ~" when the interval holds 1 (a correction would be within noise)."""
    ratio = metrics["calibration_ratio"]
    low, high = metrics.get("calibration_ratio_low"), metrics.get("calibration_ratio_high")
    if low is None or high is None:
        return f"{ratio:.3f}"
    return f"{ratio:.3f} [{low:.3f}, {high:.3f}]" + (" ~" if mark and low <= 1.0 <= high else "")


@calibrate_app.command("apply")
def calibrate_apply(
    calibration: CalibrationOption,
    predictions: Annotated[Path, typer.Option(help="Parquet or CSV with logit_<task> or p_<task> and segment columns")],
    out: Annotated[Path, typer.Option(help="output file (.parquet or .csv): the input plus p_<task> columns")],
    model: BundleOption = None,
    progress: ProgressOption = True,
) -> None:
    """Write calibrated p_<task> columns beside the input, with the service's own apply code."""
    from app.offline.calibration import PredictionFile, apply_predictions

    with user_errors():
        cal, manifest = _checked(calibration, model)
        rows = apply_predictions(cal, PredictionFile(predictions), out, manifest=manifest, show_progress=progress)
    typer.echo(f"wrote {rows} rows with p_{{task}} for {', '.join(cal.tasks)} to {out}")


@calibrate_app.command("report")
@needs_extra("offline")
@with_groups
def calibrate_report(
    *,
    calibration: CalibrationOption,
    out: Annotated[Path, typer.Option(help="folder for report.md and the reliability PNGs")],
    predictions: Annotated[Path | None, typer.Option(help="Parquet or CSV with raw predictions, labels and"
                                                           " segments (with --engine spark: a Parquet file or"
                                                           " directory)")] = None,
    model: BundleOption = None,
    segment: Annotated[list[str] | None, typer.Option(help="extra segment column to tabulate (repeat)")] = None,
    buckets: Annotated[int, typer.Option(min=2, max=100, help="equal-mass prediction buckets")] = 10,
    progress: ProgressOption = True,
    engine: EngineOptions,
) -> None:
    """Bucket and segment tables before/after, reliability diagrams, as a markdown report."""
    from app.offline.calibration import PredictionFile, write_report

    with user_errors():
        cal, manifest = _checked(calibration, model)
        if engine.on_spark():
            from app.offline.spark import SparkInput, read_input, report_on_spark

            source = SparkInput(predictions, engine.table)
            with engine.session(progress) as spark:
                path = report_on_spark(cal, read_input(spark, source), out, origin=source.origin, manifest=manifest,
                                       extra_segments=tuple(segment or ()), buckets=buckets)
        else:
            path = write_report(cal, PredictionFile(_local_input(predictions)), out, manifest=manifest,
                                extra_segments=tuple(segment or ()), buckets=buckets, show_progress=progress)
    typer.echo(f"wrote {path}")


def _checked(calibration: Path, model: Path | None) -> tuple[CalibrationFile, ModelManifest | None]:
    """The calibration file, and with `--model` the bundle's manifest it has been checked against."""
    from app.artifacts.loading import check_calibration_for, load_calibration

    cal = load_calibration(calibration)
    manifest = _manifest(model)
    if manifest is not None:
        check_calibration_for(cal, manifest, calibration)
    return cal, manifest


def _manifest(model: Path | None) -> ModelManifest | None:
    """The manifest of the bundle given with --model, if any."""
    from app.artifacts.loading import load_manifest

    return None if model is None else load_manifest(model)


def _local_input(path: Path | None) -> Path:
    """--predictions, which --engine local needs."""
    from app.errors import ArtifactError

    if path is None:
        raise ArtifactError("--predictions", "", "no input file", "give --predictions FILE")
    return path
