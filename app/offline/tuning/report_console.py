"""Terminal summaries of the tune and simulate commands (rich tables)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["print_constrained_result", "print_fraction_result", "print_simulation_result"]


def print_fraction_result(result: dict[str, Any], quantity: str) -> None:
    console = Console()
    table = Table(title=f"tune {result['objective']} on {result['groups']} groups")
    for column in ("task", "target", "achieved", quantity.rstrip("s"), "weight"):
        table.add_column(column, justify="right")
    for task, target in result["targets"].items():
        table.add_row(task, f"{target:.3f}", f"{result['achieved'][task]:.3f}", f"{result[quantity][task]:.5f}",
                      f"{result['signed_weights'][task]:+.4f}")
    console.print(table)
    verdict = "reached" if result["reached"] else "NOT reached (the targets may be unreachable on these logs)"
    console.print(f"absolute fraction error sum {result['abs_error_sum']:.4f}: targets {verdict};"
                  f" {result['evaluations']} evaluations in {result['seconds']:.1f} s")
    if not result["reached"]:
        seen = ", ".join(f"{t} {lo:.3f}-{hi:.3f}" for t, (lo, hi) in result["fractions_seen"].items())
        console.print(f"fractions seen (each task alone included): {seen}; a target outside its range is most"
                      " likely unreachable: choose targets inside these ranges")


def print_constrained_result(result: dict[str, Any]) -> None:
    console = Console()
    primary = result["primary"]
    table = Table(title=f"tune constrained: max {primary['metric']} of {primary['task']} ({primary['gains']})")
    for column in ("", "train", "held-out"):
        table.add_column(column, justify="right")
    table.add_row(primary["metric"], f"{primary['train']:.4f}", f"{primary['holdout']:.4f}")
    top, room = result["top_k_mean_prediction"], result["room"]
    for task, limit in result["bounds"].items():
        table.add_row(f"mean p_{task} (bound {limit:g})", f"{top['train'][task]:.5f}", f"{top['holdout'][task]:.5f}")
        table.add_row(f"room kept under the p_{task} bound", f"{room[task]:.5f}", "")
    table.add_row("meets every bound", str(result["feasible"]["train"]), str(result["feasible"]["holdout"]))
    console.print(table)
    weights = ", ".join(f"{t} {w:+.4f}" for t, w in result["signed_weights"].items())
    console.print(f"weights: {weights}")
    if not result["feasible"]["train"]:
        needed = ", ".join(f"{t} >= {top['train'][t] + room[t]:.4g}" for t in result["bounds"])
        console.print(f"no weights met every bound with {result['confidence']:g} standard errors of room on the"
                      f" {result['groups']['train']} training groups; these weights violate it least. Reachable"
                      f" with this room: {needed}; or lower --confidence, or log more requests.")
    if "segments" in result:
        _print_segments(console, result)
    if "frontier" in result:
        console.print(f"frontier: {result['frontier']['markdown']} and {result['frontier']['png']}")


def _print_segments(console: Console, result: dict[str, Any]) -> None:
    """The held-out top-k means per value of the segment, against the bounds."""
    segments = result["segments"]
    mode = "bounded within each value" if segments["enforced"] else "reported only"
    table = Table(title=f"by {segments['column']} ({mode}), held-out")
    for column in ("value", "requests", *(f"mean p_{t} (bound {b:g})" for t, b in result["bounds"].items()),
                   "meets every bound"):
        table.add_column(column, justify="right")
    for value, found in segments["values"].items():
        means = found["top_k_mean_prediction"]["holdout"]
        table.add_row(value, str(found["groups"]["holdout"]), *(f"{means[t]:.5f}" for t in result["bounds"]),
                      str(found["feasible"]["holdout"]))
    console.print(table)
    if not segments["feasible_holdout"]:
        hint = ("" if segments["enforced"] else f"; --segment {segments['column']} bounds each"
                " value")
        console.print(f"some {segments['column']} values exceed a bound on the held-out requests{hint}")
    if "markdown" in segments:
        console.print(f"by segment: {segments['markdown']}")


def print_simulation_result(result: dict[str, Any]) -> None:
    """The two Pareto metrics per variant; every other figure is in report.md."""
    console = Console()
    x, y = result["x"], result["y"]
    table = Table(title=f"simulate: {len(result['metrics'])} variants, top {result['k']}")
    for column in ("variant", f"{x} (lower)", f"{y} (higher)", "Pareto"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for label, values in result["metrics"].items():
        table.add_row(label, f"{values[x]:.5f}", f"{values[y]:.4f}", "yes" if label in result["pareto"] else "")
    console.print(table)
    if result["emitted_policy"]:
        console.print(f"draft policy ({result['picked']}): {result['emitted_policy']} (approved_by is empty)")
