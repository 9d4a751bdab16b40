"""`fusionrank train` and `fusionrank export`: a multi-task ranker from a spec, then a bundle."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console



__all__ = ["export", "train"]

def train(
    spec: Annotated[Path, typer.Option(help="training spec YAML (dataset columns, tasks, training options)")],
    data: Annotated[Path, typer.Option(help="a Parquet/CSV log file, or a folder of them")],
    out: Annotated[Path, typer.Option(help="run folder to write (model, checkpoints, report)")],
    seed: Annotated[int | None, typer.Option(help="override training.seed")] = None,
    memory: Annotated[str, typer.Option(help="auto | stream (re-read the files every epoch) | memory")] = "auto",
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
    resume: Annotated[
        bool, typer.Option(help="continue from RUN's last checkpoint (same spec; epochs may grow)")
    ] = False,
) -> None:
    """Train a multi-task ranker from a spec and a log; writes RUN with the model and its report."""
    from rich.console import Console

    from app.errors import FusionrankError
    from app.offline.training.train import train_run

    if memory not in ("auto", "stream", "memory"):
        raise typer.BadParameter("use auto, stream or memory", param_hint="--memory")
    console = Console()
    try:
        result = train_run(
            spec, data, out, seed=seed, memory=memory, show_progress=progress, resume=resume  # type: ignore[arg-type]
        )
    except FusionrankError as exc:
        console.print(f"[red]error:[/red] {exc.message}", highlight=False)
        for detail in exc.details[1:]:  # the first one is the message
            console.print(f"  {detail.field or ''}: {detail.message}", highlight=False)
        raise typer.Exit(code=2) from None
    _print_report(console, result.report)
    console.print(f"run: {result.run} ({result.seconds:.1f} s); report: {result.run / 'report.md'}")


def export(
    run: Annotated[Path, typer.Option(help="run folder written by `fusionrank train`")],
    out: Annotated[Path, typer.Option(help="bundle folder model_store/<name>/<version>")],
    calibration_version: Annotated[str, typer.Option(help="version of the starter Platt calibration")] = "1",
    overwrite: Annotated[bool, typer.Option(help="replace an existing bundle folder")] = False,
) -> None:
    """Export RUN to ONNX with a parity check, a manifest and a starter calibration."""
    from rich.console import Console

    from app.errors import FusionrankError
    from app.offline.training.bundle import export_run

    console = Console()
    try:
        result = export_run(run, out, calibration_version=calibration_version, overwrite=overwrite)
    except FusionrankError as exc:
        console.print(f"[red]error:[/red] {exc.message}", highlight=False)
        raise typer.Exit(code=2) from None
    parity = result.manifest.parity
    if parity is not None:
        console.print(
            f"parity torch vs onnxruntime at batch {parity.batch_sizes}: max |diff| = {parity.max_abs_diff:.2e}"
        )
    console.print(f"bundle: {result.bundle_dir} (calibration {result.calibration.version})")


def _print_report(console: Console, report: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"{report['name']}: {report['split']} split")
    metrics = ("count", "auc", "logloss", "normalised_entropy", "calibration_ratio", "ece", "f1")
    table.add_column("task")
    for m in metrics:
        table.add_column(m)
    for task, entry in report["tasks"].items():
        overall = entry["overall"]
        table.add_row(task, *("n/a" if overall.get(m) is None else f"{overall[m]:.4g}" for m in metrics))
    console.print(table)
