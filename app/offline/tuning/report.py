"""The simulation report (a markdown page and a Pareto-frontier plot of two chosen metrics) and the per-segment
page of `tune constrained --segment`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.offline.tuning.outcomes import MIX_LIMIT
from app.offline.tuning.simulation import SimulationResult

__all__ = ["constrained_segments_markdown", "plot_pareto", "simulation_markdown"]


def _fmt(value: float) -> str:
    if value != value:  # NaN
        return "–"
    if abs(value) >= 100 or (abs(value) >= 10 and value == int(value)):  # counts print as counts
        return f"{value:,.0f}"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"


def _table(rows: dict[str, dict[str, float]], metrics: Sequence[str], first: str) -> list[str]:
    lines = [f"| {first} | " + " | ".join(f"`{m}`" for m in metrics) + " |",
             "|---|" + "---:|" * len(metrics)]
    for label, values in rows.items():
        lines.append(f"| {label} | " + " | ".join(_fmt(values.get(m, float("nan"))) for m in metrics) + " |")
    return lines


def _mix_columns(metrics: list[str]) -> list[str]:
    """Per attribute, the MIX_LIMIT values with the largest share under the first variant (whose
    metrics list them by decreasing share)."""
    shown: dict[str, list[str]] = {}
    for m in metrics:
        if m.startswith("share:"):
            values = shown.setdefault(m.split("=", 1)[0], [])
            if len(values) < MIX_LIMIT:
                values.append(m)
    return [m for values in shown.values() for m in values]


def simulation_markdown(
    result: SimulationResult, *, log_path: str, x: str, y: str, front: list[str], plot: str | None,
    emitted: str | None = None,
) -> str:
    k = result.k
    metrics = list(next(iter(result.metrics.values())))
    core = [m for m in metrics if m.startswith((f"ndcg@{k}:", "expected:")) or m in ("utility", "slate_size")]
    # each variant reports the rules it has: a table of every rule of every variant ("–" where absent)
    filters = list(dict.fromkeys(m for values in result.metrics.values() for m in values if m.startswith("filtered:")))
    mix = _mix_columns(metrics) + [m for m in ("new_item_share", "creator_hhi", "creators_per_slate") if m in metrics]
    lines = [
        "# Policy simulation", "",
        f"Logs: `{log_path}` ({int(next(iter(result.metrics.values()))['groups'])} groups). Each group was replayed"
        " as one request through the service's own utility, guardrail and slate code, on the logged calibrated"
        f" predictions. Metrics are over the served top {k} (means per request unless a share).", "",
        "## Variants", "",
        "| variant | policy | Pareto-optimal |", "|---|---|---|",
    ]
    for v in result.variants:
        lines.append(f"| {v.label} | {v.source} | {'yes' if v.label in front else ''} |")
    lines += ["", f"## Ranking quality and expected outcomes (top {k})", "",
              f"`ndcg@{k}:<task>` judges the served slate by the observed labels when the log has them"
              " (candidates with an unobserved label are left out of slate and ideal: missing is not negative),"
              " else by the calibrated"
              " predictions; for a negative task (hide, report) lower is better. `expected:<task>` is the sum of"
              " the predictions over the served slate.", ""]
    lines += _table(result.metrics, core, "variant")
    if filters:
        lines += ["", "## Filter rates (share of logged candidates)", ""]
        lines += _table(result.metrics, filters, "variant")
    if mix:
        lines += ["", f"## Mix in the top {k}", ""]
        lines += _table(result.metrics, mix, "variant")
    for column, per_variant in result.segments.items():
        lines += ["", f"## By segment: `{column}`", ""]
        rows = {f"{label} / {value}": values for label, by_value in per_variant.items()
                for value, values in by_value.items()}
        seg_metrics = list(next(iter(rows.values()))) if rows else []
        lines += _table(rows, seg_metrics, "variant / segment")
    lines += ["", "## Pareto frontier", "",
              f"x = `{x}` (lower is better), y = `{y}` (higher is better). Pareto-optimal: {', '.join(front) or '–'}."]
    if plot:
        lines += ["", f"![Pareto frontier]({plot})"]
    if emitted:
        lines += ["", "## Draft policy", "",
                  f"Written to `{emitted}` with an empty `approved_by`: the service refuses it until a reviewer"
                  " approves it."]
    return "\n".join(lines) + "\n"


def constrained_segments_markdown(result: dict[str, Any], logs: Path | str) -> str:
    """`tune constrained` per value of its segment: the top-k mean of every bounded task on the held-out (and
    training) requests against its bound, and whether each value meets them."""
    segments, bounds, k = result["segments"], result["bounds"], result["primary"]["metric"].split("@")[1]
    how = ("enforced: every bound had to hold within each value on the training requests, with room"
           if segments["enforced"] else "reported only: the bounds were fitted overall")
    lines = [f"# Bounds by segment: `{segments['column']}`", "",
             f"Logs `{logs}`; mean prediction over the top {k} per request, averaged over the requests of each value"
             f" ({how}). Held-out requests judge the weights.", "",
             "| value | requests (train / held-out) | " + " | ".join(
                 f"p_{t} held-out (train) ≤ {b:g}" for t, b in bounds.items()) + " | meets the bounds (held-out) |",
             "|---|---:|" + "---:|" * len(bounds) + "---|"]
    overall = result["top_k_mean_prediction"]
    lines.append(f"| **overall** | {result['groups']['train']} / {result['groups']['holdout']} | " + " | ".join(
        f"{_fmt(overall['holdout'][t])} ({_fmt(overall['train'][t])})" for t in bounds) + " | "
        + ("yes" if result["feasible"]["holdout"] else "**no**") + " |")
    for value, found in segments["values"].items():
        means, groups = found["top_k_mean_prediction"], found["groups"]
        lines.append(f"| {value} | {groups['train']} / {groups['holdout']} | " + " | ".join(
            f"{_fmt(means['holdout'][t])} ({_fmt(means['train'][t])})" for t in bounds) + " | "
            + ("yes" if found["feasible"]["holdout"] else "**no**") + " |")
    return "\n".join(lines) + "\n"


def plot_pareto(result: SimulationResult, x: str, y: str, front: list[str], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(result.metrics)
    xs = [result.metrics[n][x] for n in labels]
    ys = [result.metrics[n][y] for n in labels]
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    others = [i for i, n in enumerate(labels) if n not in front]
    ax.scatter([xs[i] for i in others], [ys[i] for i in others], color="tab:gray", alpha=0.6, label="dominated")
    fx = [result.metrics[n][x] for n in front]
    fy = [result.metrics[n][y] for n in front]
    ax.plot(fx, fy, "-o", color="tab:blue", label="Pareto-optimal")
    named = [v.label for v in result.variants if not v.label.startswith("grid")]
    # one annotation per point; variants with the same figures share it ("home/1 = grid5")
    at: dict[tuple[float, float], list[str]] = {}
    for i, name in enumerate(labels):
        if name in front or name in named:
            at.setdefault((xs[i], ys[i]), []).append(name)
    for (px, py), names in at.items():
        ax.annotate(" = ".join(names), (px, py), textcoords="offset points", xytext=(5, 4), fontsize=7)
    ax.scatter([xs[labels.index(n)] for n in named], [ys[labels.index(n)] for n in named], marker="*", s=160,
               color="tab:orange", zorder=3, label="policy files")
    ax.set_xlabel(f"{x} (lower is better)")
    ax.set_ylabel(f"{y} (higher is better)")
    ax.set_title(f"Policy variants on logged requests (top {result.k})")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
