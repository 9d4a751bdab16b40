"""Terminal summary of `simulate --ope` (a rich table per estimated policy)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["print_ope_result"]


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
