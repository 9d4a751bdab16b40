"""Held-out evaluation of a multi-task ranker: per task, per segment, as JSON and markdown.

Metrics per task, on observed (mask = 1) rows only: AUC, logloss, normalised entropy, calibration
ratio (sum p / sum y), ECE (equal-mass, 10 buckets), Brier, and precision / recall / F1 at the task's
threshold. Segments: each declared segment column, its values with at least `min_segment_rows`
observed rows (at most `max_segment_values`, the most frequent). Sample weights are not applied to
the metrics. The loss-option comparison puts runs trained with BCE, focal and weighted BCE side by
side on the same split.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from app.offline.calibration.noise import field_rce_noise, with_intervals
from app.offline.metrics import field_rce, precision_recall_f1, summary
from app.offline.training.batches import Batch, blocks
from app.offline.training.encoding import EncodedRows

__all__ = ["Predictions", "evaluate", "predict", "render_markdown", "task_metrics"]

F64 = npt.NDArray[np.float64]
COMPARED = ("auc", "logloss", "normalised_entropy", "calibration_ratio", "ece", "f1")


@dataclass(frozen=True)
class Predictions:
    """Logits [R, T] of a split with the labels [R, T], masks [R, T] and segment values [R]."""

    logits: npt.NDArray[np.float32]
    labels: npt.NDArray[np.float32]
    mask: npt.NDArray[np.float32]
    segments: dict[str, npt.NDArray[np.str_]]

    def probabilities(self) -> F64:
        return 1.0 / (1.0 + np.exp(-self.logits.astype(np.float64)))


@torch.no_grad()
def predict(model: nn.Module, chunks: Iterable[EncodedRows], segments: Sequence[str]) -> Predictions:
    """Logits of every row of `chunks` (e.g. `split_rows(log.chunks(), "test")`), in order."""
    model.eval()
    logits, labels, mask = [], [], []
    values: dict[str, list[npt.NDArray[np.str_]]] = {s: [] for s in segments}
    for chunk in blocks(chunks, 65_536):
        batch = Batch.of(chunk)
        logits.append(model(batch.numeric, batch.categorical).numpy())
        labels.append(chunk.labels)
        mask.append(chunk.mask)
        for s in segments:
            values[s].append(chunk.segments[s])
    if not logits:
        raise ValueError("no rows to predict (is the split empty?)")
    return Predictions(
        np.concatenate(logits),
        np.concatenate(labels),
        np.concatenate(mask),
        {s: np.concatenate(v) for s, v in values.items()},
    )


def task_metrics(p: F64, y: F64, threshold: float) -> dict[str, float]:
    """`summary` + precision/recall/F1 at `threshold` (1-D arrays of observed rows)."""
    if len(y) == 0:
        return {"count": 0.0}
    out = with_intervals(summary(p, y))
    out["base_rate"] = float(np.mean(y))
    out["mean_prediction"] = float(np.mean(p))
    out["threshold"] = threshold
    out["precision"], out["recall"], out["f1"] = precision_recall_f1(p, y, threshold)
    return out


def evaluate(
    predictions: Predictions,
    tasks: Sequence[str],
    thresholds: Sequence[float],
    *,
    min_segment_rows: int = 100,
    max_segment_values: int = 20,
) -> dict[str, Any]:
    """{task: {"overall": metrics, "segments": {column: {value: metrics}}}}."""
    p = predictions.probabilities()
    report: dict[str, Any] = {}
    for t, task in enumerate(tasks):
        observed = predictions.mask[:, t] > 0
        y = predictions.labels[:, t].astype(np.float64)
        entry: dict[str, Any] = {"overall": task_metrics(p[observed, t], y[observed], thresholds[t]), "segments": {}}
        for column, values in predictions.segments.items():
            names, counts = np.unique(values[observed], return_counts=True)
            keep = [(n, c) for n, c in zip(names.tolist(), counts.tolist(), strict=True) if c >= min_segment_rows]
            keep = sorted(keep, key=lambda nc: (-nc[1], nc[0]))[:max_segment_values]
            entry["segments"][column] = {
                name: task_metrics(p[observed & (values == name), t], y[observed & (values == name)], thresholds[t])
                for name, _ in keep
            }
            # Field-RCE over every value of the column, with the noise floor a calibrated model would show
            names, inverse = np.unique(values[observed], return_inverse=True)
            if len(names) and y[observed].sum() > 0:
                rows, positives = np.bincount(inverse), np.bincount(inverse, weights=y[observed])
                entry["overall"][f"field_rce.{column}"] = field_rce(p[observed, t], y[observed], inverse)
                entry["overall"][f"field_rce_noise.{column}"] = field_rce_noise(
                    list(zip(rows.astype(float).tolist(), positives.tolist(), strict=True)), float(y[observed].sum())
                )
        report[task] = entry
    return report


def _cell(m: dict[str, Any], metric: str) -> str:
    """One table cell; "ratio 95%" is the Wilson interval of the calibration ratio (from the positives)."""
    if metric == "ratio 95%":
        low, high = m.get("calibration_ratio_low"), m.get("calibration_ratio_high")
        return "n/a" if low is None or high is None else f"{low:.3f} – {high:.3f}"
    return _fmt(m.get(metric, float("nan")), metric)


def _fmt(value: Any, metric: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.0f}" if metric in ("count", "positives") else f"{value:.4f}"
    return str(value)


def render_markdown(report: dict[str, Any]) -> str:
    """The JSON report of a run (see `app.offline.training.train`) as a markdown page."""
    lines = [f"# Training report: {report['name']}", ""]
    selection = report.get("selection") or {}
    task_epochs = report.get("task_epochs") or {}
    chosen = ", ".join(f"{t} {e}" for t, e in task_epochs.items()) or str(report["best_epoch"])
    lines += [
        f"- split evaluated: **{report['split']}** ({report['rows']} rows); "
        f"{len(report['history'])} epochs trained"
        + (" (stopped early: no task improved its own metric for the patience)" if report.get("stopped_early") else ""),
        f"- selected epoch per task: {chosen}"
        + (
            f" (selection: {selection.get('combine')}; metric per task: "
            + ", ".join(f"{t} {m}" for t, m in (selection.get("metrics") or {}).items())
            + ")"
            if selection
            else ""
        ),
    ]
    for row in report.get("infeasible_constraints") or []:
        lines.append(f"- **warning**: {row['warning']}")
    lines.append("")
    metrics = (
        "count",
        "positives",
        "auc",
        "logloss",
        "normalised_entropy",
        "calibration_ratio",
        "ratio 95%",
        "ece",
        "precision",
        "recall",
        "f1",
    )
    lines += ["## Per task", "", "| task | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for task, entry in report["tasks"].items():
        lines.append(f"| {task} | " + " | ".join(_cell(entry["overall"], m) for m in metrics) + " |")
    rce = [
        (task, key.removeprefix("field_rce."), value, entry["overall"].get("field_rce_noise." + key[10:]))
        for task, entry in report["tasks"].items()
        for key, value in entry["overall"].items()
        if key.startswith("field_rce.")
    ]
    if rce:
        lines += [
            "",
            "## Field-RCE per segment column (and the noise floor a calibrated model would show)",
            "",
            "| task | column | Field-RCE | noise floor | |",
            "|---|---|---|---|---|",
        ]
        for task, column, value, noise in rce:
            verdict = "" if value is None or noise is None else ("within noise" if value < noise else "beyond noise")
            lines.append(f"| {task} | {column} | {_fmt(value)} | {_fmt(noise)} | {verdict} |")
    for task, entry in report["tasks"].items():
        for column, values in entry["segments"].items():
            if not values:
                continue
            lines += [
                "",
                f"## {task} by {column}",
                "",
                "| value | " + " | ".join(metrics) + " |",
                "|---" * (len(metrics) + 1) + "|",
            ]
            for value, m in values.items():
                lines.append(f"| {value} | " + " | ".join(_cell(m, k) for k in metrics) + " |")
    if report.get("constraints"):
        lines += [
            "",
            "## Constraints (validation logloss, per epoch)",
            "",
            "| epoch | task | bound | validation loss | violation | lambda |",
            "|---|---|---|---|---|---|",
        ]
        for row in report["constraints"]:
            lines.append(
                f"| {row['epoch']} | {row['task']} | {_fmt(row['bound'])} | {_fmt(row['valid_loss'])} | "
                f"{_fmt(row['violation'])} | {_fmt(row['lambda'])} |"
            )
    comparison = report.get("loss_comparison")
    if comparison:
        lines += [
            "",
            "## Loss options side by side (same split, same seed)",
            "",
            "| task | option | " + " | ".join(COMPARED) + " |",
            "|---" * (len(COMPARED) + 2) + "|",
        ]
        tasks = list(report["tasks"])
        for task in tasks:
            for option, per_task in comparison.items():
                m = per_task[task]
                lines.append(
                    f"| {task} | {option} | " + " | ".join(_fmt(m.get(k, float("nan"))) for k in COMPARED) + " |"
                )
    lines += [
        "",
        "## Training history",
        "",
        "| epoch | sum objective | " + " | ".join(f"valid {t} logloss" for t in report["tasks"]) + " |",
        "|---" * (len(report["tasks"]) + 2) + "|",
    ]
    for epoch in report["history"]:
        lines.append(
            f"| {epoch['epoch']} | {_fmt(epoch['monitor'])} | "
            + " | ".join(_fmt(epoch["valid_loss"][t]) for t in report["tasks"])
            + " |"
        )
    return "\n".join(lines) + "\n"
