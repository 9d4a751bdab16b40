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
    seed: Annotated[int, typer.Option(help="random seed of the log and the weights")] = 7,
    rows: Annotated[int, typer.Option(min=2000, help="impressions in the synthetic log")] = 300_000,
    epochs: Annotated[int, typer.Option(min=1, help="training epochs")] = 3,
    progress: ProgressOption = True,
    logs: Annotated[bool, typer.Option(help="also write demo_data/logs.parquet for `tune` and `simulate`")] = False,
) -> None:
    """Synthetic log, then `train`, `export`, `predict` and `calibrate fit` as a user runs them; writes a
    servable bundle, a policy and a sample request.

    The same seed and options write the same bytes on the same machine and library versions (torch,
    onnx, onnxscript, onnxruntime, numpy); manifest.json records the git commit that trained.
    """
    from rich.console import Console

    from app.offline.demo import DemoConfig, print_summary, run_demo

    result = run_demo(out, DemoConfig(seed=seed, rows=rows, epochs=epochs, show_progress=progress, logs=logs))
    print_summary(Console(), result)
