"""`fusionrank`: the service and the offline toolkit behind one command.

Offline commands import torch and friends lazily, so `fusionrank serve` runs without them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["app", "main"]

app = typer.Typer(
    name="fusionrank", no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False,
    help="Calibrated multi-task ranking under versioned utility policies.",
)


@app.command()
def serve(
    model_store: Annotated[Path, typer.Option(help="folder of model bundles")] = Path("model_store"),
    policies: Annotated[Path, typer.Option(help="folder of policies")] = Path("policies"),
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to bind")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Serve /v1/score on HOST:PORT with the bundles and policies given."""
    import uvicorn

    # Settings are read from the environment inside each worker's lifespan.
    os.environ["FUSIONRANK_MODEL_STORE"] = str(model_store.resolve())
    os.environ["FUSIONRANK_POLICIES"] = str(policies.resolve())
    os.environ["FUSIONRANK_HOST"] = host
    os.environ["FUSIONRANK_PORT"] = str(port)
    uvicorn.run(
        "app.main:create_app", factory=True, host=host, port=port, workers=workers, log_level=log_level,
        access_log=False,
    )


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="folder to write model_store/, policies/ and demo_data/ into")],
    seed: Annotated[int, typer.Option(help="random seed; the same seed writes the same bundle")] = 7,
    rows: Annotated[int, typer.Option(min=2000, help="impressions in the synthetic log")] = 300_000,
    epochs: Annotated[int, typer.Option(min=1, help="training epochs")] = 3,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Generate a synthetic log, train, export, calibrate, and write a servable bundle and policy."""
    from rich.console import Console
    from rich.table import Table

    from app.offline.demo import DemoConfig, run_demo

    result = run_demo(out, DemoConfig(seed=seed, rows=rows, epochs=epochs, show_progress=progress))
    console = Console()
    table = Table(title=f"{result.manifest.name}/{result.manifest.version} on held-out days")
    for column in ("task", "AUC", "ratio raw", "ratio calibrated", "logloss raw", "logloss calibrated"):
        table.add_column(column)
    for task, cal in result.calibration.tasks.items():
        before, after = cal.metrics.before, cal.metrics.after
        table.add_row(
            task, f"{before['auc']:.3f}", f"{before['calibration_ratio']:.3f}", f"{after['calibration_ratio']:.3f}",
            f"{before['logloss']:.5f}", f"{after['logloss']:.5f}",
        )
    console.print(table)
    if result.manifest.parity is not None:
        console.print(f"parity torch vs onnxruntime: max |diff| = {result.manifest.parity.max_abs_diff:.2e}")
    console.print(f"bundle: {result.bundle_dir}\npolicy: {result.policy_path}")
    if result.predictions_path:
        console.print(f"held-out predictions: {result.predictions_path}")


@app.command()
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
    from app.offline.pipeline import train_run

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


@app.command()
def export(
    run: Annotated[Path, typer.Option(help="run folder written by `fusionrank train`")],
    out: Annotated[Path, typer.Option(help="bundle folder model_store/<name>/<version>")],
    calibration_version: Annotated[str, typer.Option(help="version of the starter Platt calibration")] = "1",
    overwrite: Annotated[bool, typer.Option(help="replace an existing bundle folder")] = False,
) -> None:
    """Export RUN to ONNX with a parity check, a manifest and a starter calibration."""
    from rich.console import Console

    from app.errors import FusionrankError
    from app.offline.bundle import export_run

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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
