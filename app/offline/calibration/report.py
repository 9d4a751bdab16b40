"""`calibrate report`: bucket and segment tables, reliability diagrams and a markdown page per run.

For every task of the calibration file (observed rows only): the metric set before (sigmoid of the
raw logit) and after (the file applied with the service's code); the bucket table (equal-mass
buckets of the prediction: count | avg(pred) | avg(label)) before and after; the per-segment table
for each segment feature; and reliability diagrams (avg(label) against avg(pred) per bucket, log
axes, 95% binomial intervals) as PNGs. The report holds the whole file in memory: run it on a
held-out sample, not on a month of logs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from app.artifacts.calibration import CalibrationFile
from app.artifacts.manifest import ModelManifest
from app.offline.calibration.apply import OfflineCalibration, segment_vocabularies
from app.offline.calibration.build import held_out_metrics
from app.offline.calibration.source import PredictionFile, encode_column
from app.serving.calibration import sigmoid

__all__ = ["Bucket", "bucket_table", "write_report"]

Array = npt.NDArray[np.float64]
_METRICS = ("count", "positives", "calibration_ratio", "ece", "ece_equal_width", "logloss",
            "normalised_entropy", "brier", "auc")


@dataclass(frozen=True, slots=True)
class Bucket:
    low: float
    high: float
    count: int
    avg_pred: float
    avg_label: float
    positives: float


def bucket_table(p: Array, y: Array, buckets: int = 10) -> list[Bucket]:
    """Equal-mass buckets of p (the rows sorted by p, split in sizes differing by at most one)."""
    order = np.argsort(p, kind="stable")
    out = []
    for chunk in np.array_split(order, buckets):
        if chunk.size:
            out.append(Bucket(float(p[chunk].min()), float(p[chunk].max()), int(chunk.size),
                              float(p[chunk].mean()), float(y[chunk].mean()), float(y[chunk].sum())))
    return out


@dataclass(slots=True)
class _Task:
    z: Array
    y: Array
    segments: dict[str, npt.NDArray[np.str_]]


def _read(
    calibration: CalibrationFile, source: PredictionFile, features: Sequence[str], manifest: ModelManifest | None
) -> tuple[dict[str, _Task], dict[str, Array]]:
    tasks = source.tasks(need_labels=True, only=list(calibration.tasks))
    source.require(features, "segment")
    vocabularies = segment_vocabularies(calibration, manifest)
    applier = OfflineCalibration(calibration, [t.task for t in tasks], vocabularies)
    parts: dict[str, list[tuple[Array, Array, Array, list[npt.NDArray[np.str_]]]]] = {t.task: [] for t in tasks}
    rows = 0
    for batch in source.batches(source.columns):
        logits = np.stack([source.raw_logits(batch, t, rows) for t in tasks], axis=1)
        categorical = np.zeros((batch.num_rows, len(applier.features)), dtype=np.int64)
        values = {}
        for feature in sorted(set(features) | set(applier.features)):
            codes, dictionary = encode_column(batch, feature)
            if feature in applier.features:
                categorical[:, applier.features.index(feature)] = applier.codes(feature, dictionary)[codes]
            values[feature] = np.array([v if v != dictionary[-1] else "(null)" for v in dictionary])[codes]
        p = applier.apply(np.nan_to_num(logits), categorical)
        for t, columns in enumerate(tasks):
            y, w = source.observed(batch, columns, logits[:, t], rows)
            keep = w > 0
            parts[columns.task].append((logits[keep, t], y[keep], p[keep, t], [values[f][keep] for f in features]))
        rows += batch.num_rows
    data, calibrated = {}, {}
    for task, chunks in parts.items():
        data[task] = _Task(
            z=np.concatenate([c[0] for c in chunks]), y=np.concatenate([c[1] for c in chunks]),
            segments={f: np.concatenate([c[3][j] for c in chunks]) for j, f in enumerate(features)},
        )
        calibrated[task] = np.concatenate([c[2] for c in chunks])
    return data, calibrated


def write_report(
    calibration: CalibrationFile, source: PredictionFile, out: Path, *, manifest: ModelManifest | None = None,
    extra_segments: Sequence[str] = (), buckets: int = 10,
) -> Path:
    """Write `out/report.md` and `out/reliability_<task>_{before,after}.png`; returns the markdown path."""
    features = list(dict.fromkeys([s.feature for t in calibration.tasks.values() for s in t.segments]
                                  + list(extra_segments)))
    data, calibrated = _read(calibration, source, features, manifest)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# Calibration report: version {calibration.version}", "",
             f"- calibration file fitted for: {_fitted_for(calibration)}",
             f"- predictions: `{source.path}`; observed rows only (mask = 1)",
             f"- buckets: {buckets} equal-mass buckets of the prediction; Field-RCE per feature:"
             " sum over values |sum(p) - sum(y)| / sum(y)", ""]
    for task, rows in data.items():
        cal = calibration.tasks[task]
        before, after = sigmoid(rows.z), calibrated[task]
        codes = {f: np.unique(v, return_inverse=True)[1].reshape(-1) for f, v in rows.segments.items()}
        m_before = held_out_metrics(before, rows.y, codes)
        m_after = held_out_metrics(after, rows.y, codes)
        lines += [f"## {task}", "", f"global calibrator: `{cal.calibrator.method}`; segment corrections:"
                  f" {', '.join(s.feature for s in cal.segments) or 'none'}", ""]
        lines += ["| metric | before | after |", "|---|---:|---:|"]
        for name in [*_METRICS, *(f"field_rce.{f}" for f in features)]:
            lines.append(f"| {name} | {_fmt(m_before[name])} | {_fmt(m_after[name])} |")
        for label, p in (("before", before), ("after", after)):
            table = bucket_table(p, rows.y, buckets)
            png = out / f"reliability_{task}_{label}.png"
            m = m_before if label == "before" else m_after
            _reliability_png(table, png, f"{task}, {label} calibration: ratio {_fmt(m['calibration_ratio'])},"
                             f" ECE {_fmt(m['ece'])}, {_fmt(m['positives'])} positives")
            lines += ["", f"### {task}: buckets {label} calibration", "",
                      "| bucket | pred range | count | avg(pred) | avg(label) | positives |",
                      "|---:|---|---:|---:|---:|---:|"]
            for i, b in enumerate(table, start=1):
                lines.append(f"| {i} | {b.low:.4g} – {b.high:.4g} | {b.count} | {b.avg_pred:.5f} | {b.avg_label:.5f}"
                             f" | {b.positives:.0f} |")
            lines += ["", f"![{task} {label}]({png.name})"]
        for feature in features:
            lines += ["", f"### {task}: by {feature}", "",
                      "| value | count | positives | avg(label) | avg(pred) before | avg(pred) after"
                      " | ratio before | ratio after |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
            values = rows.segments[feature]
            for value in sorted(set(values.tolist())):
                sel = values == value
                y_sum = float(rows.y[sel].sum())
                lines.append(
                    f"| {value} | {int(sel.sum())} | {y_sum:.0f} | {rows.y[sel].mean():.5f} | {before[sel].mean():.5f}"
                    f" | {after[sel].mean():.5f} | {_ratio(before[sel], y_sum)} | {_ratio(after[sel], y_sum)} |"
                )
        lines.append("")
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _fitted_for(calibration: CalibrationFile) -> str:
    m = calibration.model
    return "no model (offline only)" if m is None else f"{m.name}/{m.version} (sha {m.sha256[:12]})"


def _fmt(value: float) -> str:
    return "n/a" if value != value else f"{value:.4g}"


def _ratio(p: Array, positives: float) -> str:
    return "n/a (no positives)" if positives <= 0 else f"{float(p.sum()) / positives:.3f}"


def _reliability_png(table: list[Bucket], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    pred = np.array([b.avg_pred for b in table])
    rate = np.array([b.avg_label for b in table])
    count = np.array([b.count for b in table], dtype=np.float64)
    half = 1.96 * np.sqrt(np.maximum(rate * (1 - rate), 1e-12) / count)  # normal-approximation 95% interval
    floor = max(1e-6, float(min(pred.min(), rate[rate > 0].min() if np.any(rate > 0) else pred.min())) / 2)
    top = min(1.0, float(max(pred.max(), rate.max())) * 2)
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=110)
    ax.plot([floor, top], [floor, top], color="0.6", linestyle="--", linewidth=1, label="perfect calibration")
    lower = np.maximum(rate - half, floor)
    ax.errorbar(pred, np.maximum(rate, floor), yerr=[np.maximum(rate, floor) - lower, half], fmt="o-",
                color="tab:blue", markersize=4, linewidth=1, capsize=2, label="avg(label) per bucket, 95% CI")
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        # Labels at 1, 2 and 5 x 10^k, as plain numbers; unlabelled minor ticks (labels would overlap).
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlim(floor, top)
    ax.set_ylim(floor, top)
    ax.set_xlabel("avg(prediction) in bucket")
    ax.set_ylabel("avg(label) in bucket")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
