"""`fusionrank rollout report`: the canary readout of a joined log (app.offline.rollout)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli.exits import user_errors
from app.cli.extras import needs_extra

__all__ = ["report", "rollout_app"]

rollout_app = typer.Typer(name="rollout", no_args_is_help=True,
                          help="Read a rollout (canary or two policy versions) out of the served logs.")


@rollout_app.command("report")
@needs_extra("offline")
def report(
    *,
    joined: Annotated[Path, typer.Option(help="the joined log of `fusionrank logs join` (Parquet)")],
    thresholds: Annotated[Path | None, typer.Option(help="YAML of the rules to judge by (docs/closing-the-loop.md)")
                          ] = None,
    rule: Annotated[list[str], typer.Option("--rule", help="METRIC:increase|decrease:SHIP_AT:ABORT_AT (relative"
                                                           " change), e.g. click:increase:0:-0.05")] = [],  # noqa: B006
    arm_column: Annotated[str, typer.Option(help="column naming the arm: `arm` (stable / canary) or"
                                                 " `policy_version`")] = "arm",
    control: Annotated[str | None, typer.Option(help="the control arm's value (default: stable)")] = None,
    treatment: Annotated[str | None, typer.Option(help="the treatment arm's value (default: canary)")] = None,
    min_requests: Annotated[int | None, typer.Option(min=1, help="requests each arm needs before a ship")] = None,
    k: Annotated[int | None, typer.Option(min=1, help="count the top k served positions (default: all)")] = None,
    segment: Annotated[list[str], typer.Option("--segment", help="column to break the readout down by")] = [],  # noqa: B006
    mix: Annotated[list[str], typer.Option("--mix", help="column whose share of served slots is compared")] = [],  # noqa: B006
    confidence: Annotated[float, typer.Option(min=0.5, max=0.999, help="confidence of the intervals")] = 0.95,
    bootstrap: Annotated[int, typer.Option(min=50, max=100_000, help="bootstrap replicates")] = 500,
    out: Annotated[Path | None, typer.Option(help="write the readout as JSON here")] = None,
) -> None:
    """Per arm: outcome rates, utility, filter and mix shares with intervals; the change and a verdict."""
    from app.offline.rollout import (
        ReadoutSettings,
        merged,
        parse_rule,
        read_rollout,
        read_thresholds,
    )

    with user_errors(ValueError):
        base = read_thresholds(thresholds) if thresholds is not None else None
        rules = merged(base, [parse_rule(r) for r in rule], control, treatment, min_requests)
        settings = ReadoutSettings(rules, arm_column=arm_column, k=k, segments=tuple(segment), mix=tuple(mix),
                                   confidence=confidence, n_bootstrap=bootstrap)
        result = read_rollout(joined, settings)
    _print(result, rules.control, rules.treatment)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, default=float) + "\n", encoding="utf-8")
        typer.echo(f"wrote {out}")


def _print(result: dict[str, Any], control: str, treatment: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    arms = result["arms"]
    table = Table(title=f"{treatment} vs {control}: {arms[treatment]['requests']} vs {arms[control]['requests']}"
                        " requests")
    for column in ("metric", control, treatment, "change [interval]"):
        table.add_column(column, justify="right")
    for name, change in result["comparison"].items():
        a, b = arms[control]["metrics"][name], arms[treatment]["metrics"][name]
        table.add_row(name, _cell(a), _cell(b),
                      f"{change['relative_change']:+.2%} [{change['lower']:+.2%}, {change['upper']:+.2%}]")
    console.print(table)
    for column, values in result["segments"].items():
        for value, part in values.items():
            console.print(f"{column}={value}: {part['verdict'].upper()}")
    console.print(f"verdict: {result['verdict'].upper()}")
    for reason in result["reasons"]:
        console.print(f"  - {reason}")


def _cell(m: dict[str, float]) -> str:
    return f"{m['value']:.4g} [{m['lower']:.4g}, {m['upper']:.4g}]"
