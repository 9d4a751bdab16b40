"""`fusionrank train` and `fusionrank export`: a multi-task ranker from a spec, then a bundle."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from app.cli.exits import user_errors
from app.cli.extras import needs_extra
from app.cli.options import MemoryMode, ProgressOption, report_console

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["export", "train"]


@needs_extra("train")
def train(
    spec: Annotated[Path, typer.Option(help="training spec YAML (dataset columns, tasks, training options)")],
    data: Annotated[Path, typer.Option(help="a Parquet/CSV log file, or a folder of them")],
    out: Annotated[Path, typer.Option(help="run folder to write (model, checkpoints, report)")],
    seed: Annotated[int | None, typer.Option(help="override training.seed")] = None,
    memory: Annotated[MemoryMode, typer.Option(help="hold the log in memory, re-read it every epoch (stream), or"
                                                    " decide from its size (auto)")] = MemoryMode.AUTO,
    progress: ProgressOption = True,
    resume: Annotated[
        bool, typer.Option(help="continue from RUN's last checkpoint (same spec; epochs may grow)")
    ] = False,
) -> None:
    """Train a multi-task ranker from a spec and a log; writes RUN with the model and its report."""
    from app.offline.training.train import train_run

    console = report_console()
    with user_errors():
        result = train_run(spec, data, out, seed=seed, memory=memory.value, show_progress=progress, resume=resume)
    _print_report(console, result.report)
    for row in result.report.get("infeasible_constraints") or []:
        console.print(f"[bold yellow]warning:[/] {row['warning']}")
    console.print(f"run: {result.run} ({result.seconds:.1f} s); report: {result.run / 'report.md'}")


@needs_extra("train")
def export(
    run: Annotated[Path, typer.Option(help="run folder written by `fusionrank train`")],
    out: Annotated[Path, typer.Option(help="bundle folder model_store/<name>/<version>")],
    calibration_version: Annotated[str, typer.Option(help="version of the starter Platt calibration")] = "1",
    overwrite: Annotated[bool, typer.Option(help="replace an existing bundle folder")] = False,
) -> None:
    """Export RUN to ONNX with a parity check, a manifest and a starter calibration."""
    from app.offline.training.bundle import export_run

    console = report_console()
    with user_errors():
        result = export_run(run, out, calibration_version=calibration_version, overwrite=overwrite)
    parity = result.manifest.parity
    if parity is not None:
        reference = "LightGBM" if (run / "gbt").is_dir() else "torch"  # the GBT family's run keeps boosters
        console.print(
            f"parity {reference} vs onnxruntime at batch {parity.batch_sizes}: max |diff| = {parity.max_abs_diff:.2e}"
        )
    console.print(f"bundle: {result.bundle_dir} (calibration {result.calibration.version})")


def _cell(metric: str, value: Any) -> str:
    """A metric as the table shows it: counts as integers (16281, not 1.628e+04), the rest to 4 digits."""
    if value is None:
        return "n/a"
    return f"{int(value)}" if metric == "count" else f"{value:.4g}"


def _print_report(console: Console, report: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"{report['name']}: {report['split']} split")
    metrics = ("count", "auc", "logloss", "normalised_entropy", "calibration_ratio", "ece", "f1")
    table.add_column("task")
    for m in metrics:
        table.add_column(m)
    for task, entry in report["tasks"].items():
        overall = entry["overall"]
        table.add_row(task, *(_cell(m, overall.get(m)) for m in metrics))
    console.print(table)
