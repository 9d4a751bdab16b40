"""`fusionrank policy validate|diff`: check a policy as an activation does, compare two."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.cli.options import ModelStoreOption

__all__ = ["policy_app"]

policy_app = typer.Typer(
    name="policy", no_args_is_help=True, help="Validate policy files and compare two of them."
)



@policy_app.command("validate")
def policy_validate(
    file: Annotated[Path, typer.Argument(help="policy file, stored as <policies>/<surface>/<version>.yaml")],
    model_store: ModelStoreOption = Path("model_store"),
) -> None:
    """Check a policy as an activation would: schema, its model and calibration, golden-batch dry run."""
    from rich.console import Console

    from app.control.loader import BundleCache
    from app.control.warmup import GoldenBatch
    from app.errors import FusionrankError
    from app.protocol.rows import decode_score_request

    console, errors = Console(), Console(stderr=True)
    try:
        golden = GoldenBatch(lambda body: decode_score_request(body, max_candidates=1_000_000)[1])
        binding, report = golden.validate(file, BundleCache(model_store, intra_op_threads=1))
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
