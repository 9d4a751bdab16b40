"""The GBT part of a training report: per-task boosting rounds and Moo-GBT's dual trajectory (PNG).

`report.json["gbt"]` holds, per task, the selected iteration, the rounds trained and the rows used;
with constraints, `dual` holds the trajectory (per round: lambda_t, the validation loss of the
primary score on task t's labels, the primary's validation loss), the bound, the best reachable
value and whether the selected round meets every bound. `dual_trajectory.png` plots it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["gbt_markdown", "plot_dual_trajectory"]


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def gbt_markdown(gbt: dict[str, Any]) -> str:
    """Markdown section appended to report.md (history rows above are boosting rounds for this family)."""
    lines = [
        "",
        "## Gradient-boosted trees",
        "",
        "One LightGBM booster per task; the training history's `epoch` column is the boosting round.",
        "",
        "| task | selected iteration | rounds trained | stopped early | train rows | valid rows |",
        "|---|---|---|---|---|---|",
    ]
    for task, row in gbt["tasks"].items():
        lines.append(
            f"| {task} | {row['best_iteration']} | {row['rounds_trained']} | {row['stopped_early']} | "
            f"{row['train_rows']} | {row['valid_rows']} |"
        )
    dual = gbt.get("dual")
    if dual:
        lines += [
            "",
            f"### Constrained objective (primary task {dual['primary']})",
            "",
            f"Selected round {dual['selected_round']}; every bound met on validation: **{dual['feasible']}**."
            " Plot: `dual_trajectory.png`.",
            "",
            "| constrained task | bound | loss at selected round | best reachable | final lambda |",
            "|---|---|---|---|---|",
        ]
        at = dual["rounds"].index(dual["selected_round"]) if dual["selected_round"] in dual["rounds"] else -1
        for task, c in dual["constraints"].items():
            lines.append(
                f"| {task} | {_num(c['bound'])} | {_num(c['valid_loss'][at])} | {_num(c['best_reachable'])} | "
                f"{_num(c['lambda'][-1])} |"
            )
        if not dual["feasible"]:
            lines += [
                "",
                "**Warning:** no round met every bound on validation: the selected round has the lowest primary loss"
                " among the least violating (see the best reachable value per bound above).",
            ]
    return "\n".join(lines) + "\n"


def plot_dual_trajectory(dual: dict[str, Any], path: Path) -> None:
    """Three panels over boosting rounds: constraint losses with their bounds, lambdas, primary loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = dual["rounds"]
    fig, axes = plt.subplots(3, 1, figsize=(6.5, 7.5), dpi=100, sharex=True)
    for task, c in dual["constraints"].items():
        (line,) = axes[0].plot(rounds, c["valid_loss"], linewidth=1, label=f"{task}: primary score's logloss")
        axes[0].axhline(c["bound"], color=line.get_color(), linestyle="--", linewidth=1, label=f"{task}: bound")
        axes[1].plot(rounds, c["lambda"], linewidth=1, label=f"lambda {task}")
    axes[2].plot(rounds, dual["primary_valid_loss"], color="black", linewidth=1, label=f"{dual['primary']} logloss")
    if dual["selected_round"] is not None:
        for ax in axes:
            ax.axvline(dual["selected_round"], color="0.5", linestyle=":", linewidth=1)
    axes[0].set_ylabel("constraint (valid)")
    axes[1].set_ylabel("dual variable")
    axes[2].set_ylabel("primary (valid)")
    axes[2].set_xlabel("boosting round")
    for ax in axes:
        ax.grid(True, alpha=0.25)
        ax.legend(fontsize=7)
    axes[0].set_title("Moo-GBT dual trajectory (dotted: selected round)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
