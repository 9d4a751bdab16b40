"""`fusionrank demo`: a synthetic log made into a servable bundle and policy, end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.cli.extras import needs_extra
from app.cli.options import ProgressOption

__all__ = ["demo"]


@needs_extra("train")
def demo(
    out: Annotated[Path, typer.Option(help="folder to write model_store/, policies/ and demo_data/ into")],
    seed: Annotated[int, typer.Option(help="random seed; the same seed writes the same bundle")] = 7,
    rows: Annotated[int, typer.Option(min=2000, help="impressions in the synthetic log")] = 300_000,
    epochs: Annotated[int, typer.Option(min=1, help="training epochs")] = 3,
    progress: ProgressOption = True,
    logs: Annotated[bool, typer.Option(help="also write demo_data/logs.parquet for `tune` and `simulate`")] = False,
) -> None:
    """Generate a synthetic log, train, export, calibrate, and write a servable bundle and policy."""
    from rich.console import Console
    from rich.table import Table

    from app.offline.demo import DemoConfig, run_demo

    result = run_demo(out, DemoConfig(seed=seed, rows=rows, epochs=epochs, show_progress=progress, logs=logs))
    console = Console()
    table = Table(title=f"{result.manifest.name}/{result.manifest.version} on held-out days")
    features = [s.feature for s in next(iter(result.calibration.tasks.values())).segments]
    for column in ("task", "AUC", "ratio raw", "ratio calibrated", "logloss raw", "logloss calibrated",
                   *(f"Field-RCE {f} raw → cal." for f in features)):
        table.add_column(column)
    for task, cal in result.calibration.tasks.items():
        before, after = cal.metrics.before, cal.metrics.after
        table.add_row(
            task, f"{before['auc']:.3f}", f"{before['calibration_ratio']:.3f}", f"{after['calibration_ratio']:.3f}",
            f"{before['logloss']:.5f}", f"{after['logloss']:.5f}",
            *(f"{before[f'field_rce.{f}']:.3f} → {after[f'field_rce.{f}']:.3f}" for f in features),
        )
    console.print(table)
    if result.manifest.parity is not None:
        console.print(f"parity torch vs onnxruntime: max |diff| = {result.manifest.parity.max_abs_diff:.2e}")
    console.print(f"bundle: {result.bundle_dir}\npolicy: {result.policy_path}")
    if result.predictions_path:
        console.print(f"held-out predictions: {result.predictions_path}")
    if result.logs_path:
        console.print(f"logged candidate sets for tune/simulate: {result.logs_path}")
