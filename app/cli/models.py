"""`fusionrank models`: the registry view of a model store, and recording a bundle's golden batch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from app.cli.options import ModelStoreOption, PoliciesOption

__all__ = ["models_app"]

models_app = typer.Typer(
    name="models", no_args_is_help=True, help="List model versions and what serves them; record golden batches.",
)


@models_app.command("list")
def models_list(
    model_store: ModelStoreOption = Path("model_store"),
    policies: PoliciesOption = Path("policies"),
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Every model version: manifest summary, sha256, golden batch, calibrations; and each surface's triple."""
    from rich.console import Console
    from rich.table import Table

    from app.control.store import describe_store, served_from_files

    models = describe_store(model_store)
    served = served_from_files(policies)
    if as_json:
        typer.echo(json.dumps({"models": models, "surfaces": served}, indent=2))
        return
    table = Table(title=f"model versions in {model_store}")
    for column in ("model", "version", "sha256", "checks", "tasks", "created", "calibrations", "served by"):
        table.add_column(column)
    for m in models:
        key = (m["model"], m["version"])
        users = sorted(s for s, t in served.items() if (t.get("model"), t.get("model_version")) == key)
        calibrations = ", ".join(c["version"] + ("" if c["valid"] else " (invalid)") for c in m["calibrations"])
        checks = ("ok" + (" +golden" if m.get("golden_batch") else "")) if m["valid"] else "INVALID"
        table.add_row(m["model"], m["version"], (m["sha256"] or "-")[:12], checks, ",".join(m.get("tasks", [])),
                      str(m.get("created_at", "-"))[:10], calibrations or "-", ", ".join(users) or "-")
    console = Console(width=160)
    console.print(table)
    for m in models:
        if not m["valid"]:
            console.print(f"[red]{m['model']}/{m['version']}[/red]: {m['problem']}", soft_wrap=True)
    for surface, triple in sorted(served.items()):
        if "problem" in triple:
            console.print(f"surface {surface}: {triple['problem']}", soft_wrap=True)
            continue
        pin = " (pinned by the bundle file)" if triple["pinned"] == "yes" else ""
        console.print(f"surface {surface}: model {triple['model']}/{triple['model_version']}, calibration"
                      f" {triple['calibration_version']}, policy {triple['policy_version']}{pin}")


@models_app.command("golden")
def models_golden(
    bundle: Annotated[Path, typer.Argument(help="model bundle folder: model_store/<model>/<version>")],
) -> None:
    """Record golden.json: this onnxruntime's logits for the bundle's sample_request.json (checked at load)."""
    from app.artifacts.loading import load_manifest
    from app.errors import FusionrankError
    from app.serving.golden import write_golden
    from app.serving.model_runner import ModelRunner

    try:
        manifest = load_manifest(bundle)
        sample = json.loads((bundle / "sample_request.json").read_text(encoding="utf-8"))
        path = write_golden(bundle, manifest, ModelRunner(bundle / "model.onnx", manifest), sample)
    except (FusionrankError, OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {path}")
