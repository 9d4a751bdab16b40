"""`fusionrank`: the service and the offline toolkit behind one command.

Offline commands import torch and friends lazily, so `fusionrank serve` runs without them.
"""

from __future__ import annotations

import os
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


policy_app = typer.Typer(
    name="policy", no_args_is_help=True, help="Validate policy files and compare two of them."
)
app.add_typer(policy_app)


@policy_app.command("validate")
def policy_validate(
    file: Annotated[Path, typer.Argument(help="policy file, stored as <policies>/<surface>/<version>.yaml")],
    model_store: Annotated[Path, typer.Option(help="folder of model bundles")] = Path("model_store"),
) -> None:
    """Check a policy as an activation would: schema, its model and calibration, golden-batch dry run."""
    from rich.console import Console

    from app.api.warmup import validate_policy_file
    from app.errors import FusionrankError
    from app.serving.loader import BundleCache

    console, errors = Console(), Console(stderr=True)
    try:
        binding, report = validate_policy_file(file, BundleCache(model_store, intra_op_threads=1))
    except FusionrankError as exc:
        errors.print(f"[bold red]INVALID[/] {exc.message}", highlight=False, soft_wrap=True)
        for detail in exc.details[1:]:
            errors.print(f"  {detail.field or '-'}: {detail.message}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    policy = binding.policy.file
    versions = binding.versions()
    console.print(
        f"[bold green]OK[/] {file}: surface {policy.surface!r} version {policy.version!r} on"
        f" {versions['model']}/{versions['model_version']} calibration {versions['calibration_version']}",
        highlight=False, soft_wrap=True,
    )
    console.print(
        f"  {len(policy.utility)} utility terms, {len(policy.guardrails)} guardrails,"
        f" {len(policy.slate.max_per_value) + len(policy.slate.max_matching)} slate rules"
        f" (top_k {policy.slate.top_k}), {len(policy.overrides)} overrides; approved by"
        f" {', '.join(policy.governance.approved_by)}",
        highlight=False, soft_wrap=True,
    )
    answered = ", ".join(f"{label}: {n}" for label, n in report.answered.items())
    console.print(
        f"  dry run on {report.candidates} golden candidates answered {answered}", highlight=False, soft_wrap=True
    )


@policy_app.command("diff")
def policy_diff(
    old: Annotated[Path, typer.Argument(help="the policy file before")],
    new: Annotated[Path, typer.Argument(help="the policy file after")],
) -> None:
    """Show what changes from OLD to NEW: terms, guardrails, slate rules, overrides, governance."""
    from rich.console import Console
    from rich.table import Table

    from app.artifacts.diff import diff_policies
    from app.artifacts.loading import parse_artifact, read_yaml
    from app.artifacts.policy import PolicyFile
    from app.errors import FusionrankError, PolicyError

    console = Console()
    try:
        a, b = (parse_artifact(PolicyFile, read_yaml(p), p, error=PolicyError) for p in (old, new))
    except FusionrankError as exc:
        Console(stderr=True).print(f"[bold red]INVALID[/] {exc.message}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    deltas = diff_policies(a, b)
    if not deltas:
        console.print(f"no differences between {old} and {new}", highlight=False)
        return
    table = Table(title=f"{old} -> {new}", title_justify="left")
    for column in ("section", "item", "field", "change", "old -> new"):
        table.add_column(column, overflow="fold")
    colour = {"added": "green", "removed": "red", "changed": "yellow"}
    for d in deltas:
        table.add_row(d.section, d.item, d.field, f"[{colour[d.change]}]{d.change}[/]", f"{d.old} -> {d.new}")
    console.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
