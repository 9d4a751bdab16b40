"""Terminal summary of `simulate --ope` (a rich table per estimated policy)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["print_model_replay", "print_ope_result"]


def print_ope_result(result: dict[str, Any]) -> None:
    """One table per variant: per metric the logged value, DM, IPS, SNIPS, DR with its interval and the ESS."""
    console = Console()
    for label, report in result["ope"].items():
        pct = round(100 * report["confidence"])
        table = Table(title=f"off-policy value of {label} (sum over the top {report['k']} per request)")
        for column in ("metric", "requests", "logged", "DM", "IPS", "SNIPS", f"DR [{pct}% interval]", "ESS at k"):
            table.add_column(column, justify="right")
        for metric, m in report["overall"].items():
            e = m["estimates"]
            dr = e["dr"]
            table.add_row(metric, str(m["requests"]), f"{m['logged']:.4g}", f"{m['direct']:.4g}",
                          f"{e['ips']['value']:.4g}", f"{e['snips']['value']:.4g}",
                          f"{dr['value']:.4g} [{dr['lower']:.4g}, {dr['upper']:.4g}]", f"{m['ess'][-1]:.0f}")
        console.print(table)


def print_model_replay(replayed: dict[str, Any]) -> None:
    """`simulate --model`: how the bundle's predictions and slates differ from the served ones."""
    console = Console()
    table = Table(title=f"{replayed['model']} on the logged features")
    for column in ("task", "served mean p", "replayed mean p", "mean |diff|", "label mean", "served p/label",
                   "replayed p/label"):
        table.add_column(column, justify="right")
    for task, m in replayed["predictions"].items():
        table.add_row(task, f"{m['served_mean']:.4g}", f"{m['replayed_mean']:.4g}", f"{m['mean_abs_diff']:.4g}",
                      f"{m['label_mean']:.4g}", f"{m['served_ratio']:.3g}", f"{m['replayed_ratio']:.3g}")
    console.print(table)
    for label, r in replayed["rankings"].items():
        console.print(f"{label}: top-{replayed['k']} overlap with served {r['topk_overlap']:.3f}, mean rank shift"
                      f" {r['mean_rank_shift']:.3f}, same first {r['same_first']:.3f}")
    if "ope" in replayed:
        print_ope_result({"ope": {f"{label} with {replayed['model']}": value
                                  for label, value in replayed["ope"].items()}})
