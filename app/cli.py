"""`fusionrank`: the service and the offline toolkit behind one command.

Offline commands import torch and friends lazily, so `fusionrank serve` runs without them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

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
    logs: Annotated[bool, typer.Option(help="also write demo_data/logs.parquet for `tune` and `simulate`")] = False,
) -> None:
    """Generate a synthetic log, train, export, calibrate, and write a servable bundle and policy."""
    from rich.console import Console
    from rich.table import Table

    from app.offline.demo import DemoConfig, run_demo

    result = run_demo(out, DemoConfig(seed=seed, rows=rows, epochs=epochs, show_progress=progress, logs=logs))
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
    if result.logs_path:
        console.print(f"logged candidate sets for tune/simulate: {result.logs_path}")


tune_app = typer.Typer(no_args_is_help=True, help="Tune utility weights on logged candidate sets (see docs/tuning.md).")
app.add_typer(tune_app, name="tune")

LogsOption = Annotated[Path, typer.Option("--logs", help="logged candidate sets (.parquet or .csv)")]
NegativeOption = Annotated[
    list[str], typer.Option("--negative", help="a task that lowers the utility (its weight enters as -w)")
]
ProgressOption = Annotated[bool, typer.Option(help="show progress bars")]


@contextmanager
def _offline_errors() -> Iterator[None]:
    """Bad options become usage errors; bad files (FusionrankError) a one-line message and exit 2."""
    from app.errors import FusionrankError

    try:
        yield
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    except FusionrankError as error:
        typer.echo(f"error: {error.message}", err=True)
        raise typer.Exit(2) from None


@tune_app.command("ndcg-gap")
def tune_ndcg_gap(
    logs: LogsOption,
    target: Annotated[list[str], typer.Option("--target", help="TASK=FRACTION, once per task; fractions sum to 1")],
    out: Annotated[Path, typer.Option(help="weights.json to write")] = Path("weights.json"),
    negative: NegativeOption = [],  # noqa: B006 - typer reads the default, never mutates it
    k: Annotated[int | None, typer.Option(min=1, help="NDCG cutoff (default: the whole group)")] = None,
    progress: ProgressOption = True,
) -> None:
    """Weights whose per-task NDCG gaps (1 - NDCG with the task zeroed) split in the target fractions."""
    from app.offline.tuning.commands import run_fraction_tuner
    from app.offline.tuning.report_console import print_fraction_result

    with _offline_errors():
        result = run_fraction_tuner("ndcg_gap", logs, target, negative=negative, k=k, labels=False, out=out,
                                    show_progress=progress)
    print_fraction_result(result, "ndcg_gaps")
    typer.echo(f"wrote {out}")


@tune_app.command("regret")
def tune_regret(
    logs: LogsOption,
    target: Annotated[list[str], typer.Option("--target", help="TASK=FRACTION, once per task; fractions sum to 1")],
    out: Annotated[Path, typer.Option(help="weights.json to write")] = Path("weights.json"),
    negative: NegativeOption = [],  # noqa: B006
    labels: Annotated[
        bool, typer.Option("--labels/--predictions", help="task gains: observed labels or predictions")
    ] = False,
    k: Annotated[int | None, typer.Option(min=1, help="NDCG cutoff (default: the whole group)")] = None,
    progress: ProgressOption = True,
) -> None:
    """Weights whose per-task regrets (1 - NDCG against the task's own ideal ranking) split in the targets."""
    from app.offline.tuning.commands import run_fraction_tuner
    from app.offline.tuning.report_console import print_fraction_result

    with _offline_errors():
        result = run_fraction_tuner("regret", logs, target, negative=negative, k=k, labels=labels, out=out,
                                    show_progress=progress)
    print_fraction_result(result, "regrets")
    typer.echo(f"wrote {out}")


@tune_app.command("constrained")
def tune_constrained(
    logs: LogsOption,
    primary: Annotated[str, typer.Option(help="task whose NDCG@k is maximised")],
    bound: Annotated[list[str], typer.Option("--bound", help="TASK=LIMIT: mean p_TASK in the top k <= LIMIT")],
    task: Annotated[list[str], typer.Option("--task", help="a task of the utility (default: every task)")] = [],  # noqa: B006
    negative: NegativeOption = [],  # noqa: B006
    labels: Annotated[bool, typer.Option("--labels/--predictions", help="primary gains: labels or predictions")] = True,
    k: Annotated[int, typer.Option(min=1, help="top k")] = 10,
    holdout: Annotated[float, typer.Option(min=0.05, max=0.9, help="share of groups held out")] = 0.3,
    confidence: Annotated[float, typer.Option(min=0.0, help="standard errors of room kept under each bound")] = 2.0,
    sweep: Annotated[int, typer.Option(min=0, help="frontier points to fit (0: none)")] = 6,
    out: Annotated[Path, typer.Option(help="weights.json to write (the frontier goes next to it)")] = Path(
        "weights.json"),
    progress: ProgressOption = True,
) -> None:
    """Maximise the primary NDCG@k under upper bounds on negative outcomes in the top k (held-out check)."""
    from app.offline.tuning.commands import run_constrained
    from app.offline.tuning.report_console import print_constrained_result

    with _offline_errors():
        result = run_constrained(logs, tasks=task, negative=negative, primary=primary, labels=labels, bounds=bound,
                                 k=k, holdout=holdout, confidence=confidence, sweep=sweep, out=out,
                                 show_progress=progress)
    print_constrained_result(result)
    typer.echo(f"wrote {out}")


@app.command("simulate")
def simulate_command(
    logs: LogsOption,
    policy: Annotated[list[Path], typer.Option("--policy", help="a policy YAML to replay (repeat to compare)")],
    out: Annotated[Path, typer.Option(help="folder for report.md, pareto.png, results.json")],
    grid: Annotated[list[str], typer.Option("--grid", help="TERM=W1,W2,...: vary a term of the first policy")] = [],  # noqa: B006
    weights: Annotated[
        list[Path], typer.Option("--weights", help="weights.json from `tune`: the first policy with those weights")
    ] = [],  # noqa: B006
    k: Annotated[int, typer.Option(min=1, help="metrics over the top k")] = 10,
    top_k: Annotated[int | None, typer.Option(min=1, help="the request's top_k (the policy's applies too)")] = None,
    context: Annotated[
        list[str], typer.Option("--context", help="NAME=COLUMN: context attribute from a log column")
    ] = [],  # noqa: B006
    segment: Annotated[list[str], typer.Option("--segment", help="group-level column to break down by")] = [],  # noqa: B006
    mix: Annotated[list[str], typer.Option("--mix", help="attribute whose share in the top k is reported")] = [],  # noqa: B006
    x: Annotated[str | None, typer.Option(help="Pareto x metric, lower is better")] = None,
    y: Annotated[str | None, typer.Option(help="Pareto y metric, higher is better")] = None,
    emit_policy: Annotated[bool, typer.Option(help="write the picked variant as a draft policy")] = False,
    pick: Annotated[str | None, typer.Option(help="variant to emit (default: best y on the front, x no worse)")] = None,
    emit_version: Annotated[str | None, typer.Option(help="version of the draft (default: next)")] = None,
    progress: ProgressOption = True,
) -> None:
    """Replay logged requests under policies with the service's own composition; report and plot."""
    from app.offline.tuning.commands import run_simulate
    from app.offline.tuning.report_console import print_simulation_result

    with _offline_errors():
        result = run_simulate(logs, policy, grid=grid, weights=weights, out=out, k=k, top_k=top_k, context=context,
                              segments=segment, mix=mix, x=x, y=y, emit_policy=emit_policy, pick=pick,
                              emit_version=emit_version, show_progress=progress)
    print_simulation_result(result)
    typer.echo(f"wrote {out / 'report.md'}, {out / 'pareto.png'}, {out / 'results.json'}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
