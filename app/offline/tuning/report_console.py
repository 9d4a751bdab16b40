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


def print_constrained_result(result: dict[str, Any]) -> None:
    console = Console()
    primary = result["primary"]
    table = Table(title=f"tune constrained: max {primary['metric']} of {primary['task']} ({primary['gains']})")
    for column in ("", "train", "held-out"):
        table.add_column(column, justify="right")
    table.add_row(primary["metric"], f"{primary['train']:.4f}", f"{primary['holdout']:.4f}")
    top = result["top_k_mean_prediction"]
    for task, limit in result["bounds"].items():
        table.add_row(f"mean p_{task} (bound {limit:g})", f"{top['train'][task]:.5f}", f"{top['holdout'][task]:.5f}")
    table.add_row("meets every bound", str(result["feasible"]["train"]), str(result["feasible"]["holdout"]))
    console.print(table)
    weights = ", ".join(f"{t} {w:+.4f}" for t, w in result["signed_weights"].items())
    console.print(f"weights: {weights}")
    if "frontier" in result:
        console.print(f"frontier: {result['frontier']['markdown']} and {result['frontier']['png']}")


def print_simulation_result(result: dict[str, Any]) -> None:
    console = Console()
    metrics = result["metrics"]
    k = result["k"]
    first = next(iter(metrics.values()))
    shown = [m for m in first if m.startswith((f"ndcg@{k}:", "expected:"))] + ["creator_hhi", "new_item_share"]
    shown = [m for m in shown if m in first]
    table = Table(title=f"simulate: {len(metrics)} variants, top {k}")
    table.add_column("variant")
    for m in shown:
        table.add_column(m, justify="right")
    for label, values in metrics.items():
        star = " *" if label in result["pareto"] else ""
        table.add_row(label + star, *(f"{values[m]:.4f}" for m in shown))
    console.print(table)
    console.print(f"* Pareto-optimal on x = {result['x']} (lower), y = {result['y']} (higher)")
    if result["emitted_policy"]:
        console.print(f"draft policy ({result['picked']}): {result['emitted_policy']} — approved_by is empty")
