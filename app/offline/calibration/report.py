"""`calibrate report`: bucket and segment tables, reliability diagrams and a markdown page per run.

For every task of the calibration file (observed rows only): the metric set before (sigmoid of the
raw logit) and after (the file applied with the service's code); the bucket table (equal-mass
buckets of the prediction: count | avg(pred) | avg(label)) before and after; the per-segment table
for each segment feature; and reliability diagrams (avg(label) against avg(pred) per bucket, log
axes, 95% binomial intervals) as PNGs.

The file is read twice in batches and never held: the first pass sums everything and histograms the
predictions, the second keeps only the rows needed to rank exactly where a bucket starts or ends and
inside the histogram bins that the AUC cannot rank from counts (`app.offline.calibration.stream_metrics`).
Memory is one batch plus a few MB per task and prediction column, whatever the file's size, and the
report is the one the rows held in memory give. The one exception: past 2M such rows per column (a
file of millions of rows with continuous predictions), the AUC is read from the histogram and
printed with the most it can be off, e.g. `0.7191 (±4e-05)`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from app.artifacts.calibration import CalibrationFile
from app.artifacts.manifest import ModelManifest
from app.offline.calibration.apply import OfflineCalibration, segment_vocabularies
from app.offline.calibration.noise import field_rce_noise, ratio_interval, with_intervals, within_noise
from app.offline.calibration.source import MISSING, PredictionFile, TaskColumns, encode_column
from app.offline.calibration.stream_metrics import Bucket, StreamedMetrics
from app.offline.progress import progress_bar
from app.serving.calibration import sigmoid

__all__ = ["SegmentSums", "TaskTables", "render_report", "report_features", "write_report"]

Array = npt.NDArray[np.float64]
_METRICS = ("count", "positives", "calibration_ratio", "ece", "ece_equal_width", "logloss",
            "normalised_entropy", "brier", "auc")
_NULL = "(null)"  # how a missing segment value is shown


@dataclass(slots=True)
class SegmentSums:
    """Per value of one segment feature: count, positives, Σp raw (before) and Σp calibrated (after)."""

    index: dict[str, int] = field(default_factory=dict)
    sums: Array = field(default_factory=lambda: np.zeros((0, 4)))  # [values, 4]

    def add(self, codes: npt.NDArray[np.int64], dictionary: Sequence[str], y: Array, before: Array,
            after: Array) -> None:
        """codes [R] into `dictionary` (MISSING = null), labels and both predictions, all [R]."""
        ids = np.array([self.index.setdefault(_NULL if v == MISSING else v, len(self.index)) for v in dictionary],
                       dtype=np.intp)
        if len(self.index) > self.sums.shape[0]:
            self.sums = np.vstack([self.sums, np.zeros((len(self.index) - self.sums.shape[0], 4))])
        row_ids = ids[codes]
        for j, weights in enumerate((None, y, before, after)):
            self.sums[:, j] += np.bincount(row_ids, weights=weights, minlength=len(self.index))

    def add_totals(self, values: Sequence[str], totals: Array) -> None:
        """Sums an engine computed: per value [V] (MISSING = null) its count, positives, Σp before, Σp after [V, 4]."""
        for value, row in zip(values, np.asarray(totals, dtype=np.float64), strict=True):
            i = self.index.setdefault(_NULL if value == MISSING else value, len(self.index))
            if i == self.sums.shape[0]:
                self.sums = np.vstack([self.sums, np.zeros((1, 4))])
            self.sums[i] += row

    def rows(self) -> list[tuple[str, int, float, float, float]]:
        """(value, count, positives, Σp before, Σp after) of the values seen, sorted by value."""
        return [(v, int(self.sums[i, 0]), float(self.sums[i, 1]), float(self.sums[i, 2]), float(self.sums[i, 3]))
                for v, i in sorted(self.index.items()) if self.sums[i, 0] > 0]

    def noise(self) -> float:
        """Field-RCE a perfectly calibrated model would show from sampling alone (`noise.field_rce_noise`)."""
        return field_rce_noise([(float(n), float(y)) for n, y in self.sums[:, :2]], float(self.sums[:, 1].sum()))

    def field_rce(self, after: bool) -> float:
        """Σ_v |Σp − Σy| / Σy over the values, as `app.offline.metrics.field_rce`."""
        positives = float(self.sums[:, 1].sum())
        if positives <= 0:
            return float("nan")
        return float(np.abs(self.sums[:, 3 if after else 2] - self.sums[:, 1]).sum()) / positives


@dataclass(slots=True)
class TaskTables:
    before: StreamedMetrics
    after: StreamedMetrics
    segments: dict[str, SegmentSums]

    @classmethod
    def empty(cls, features: Sequence[str], buckets: int) -> TaskTables:
        """Nothing added yet: both prediction streams (with `buckets` equal-mass buckets) and the segment sums."""
        return cls(StreamedMetrics([buckets]), StreamedMetrics([buckets]), {f: SegmentSums() for f in features})

    def metrics(self, after: bool) -> dict[str, float]:
        """`held_out_metrics`: the summary set plus Field-RCE per segment feature."""
        out = with_intervals((self.after if after else self.before).summary())
        out.update({f"field_rce.{f}": sums.field_rce(after) for f, sums in self.segments.items()})
        return out

    def noise(self) -> dict[str, float]:
        """Field-RCE noise floor per segment feature (the same before and after: it depends on the labels)."""
        return {f: sums.noise() for f, sums in self.segments.items()}


_Batch = tuple[int, dict[str, tuple[npt.NDArray[np.int64], list[str]]], list[tuple[npt.NDArray[np.bool_], Array,
                                                                                    Array, Array]]]


def _batches(
    source: PredictionFile, tasks: list[TaskColumns], applier: OfflineCalibration, features: Sequence[str]
) -> Iterator[_Batch]:
    """Per batch: (rows, feature -> (codes, dictionary), per task (observed mask, z, y, p calibrated))."""
    needed = {c for t in tasks for c in (t.raw, t.label, t.mask) if c is not None}
    needed |= set(features) | set(applier.features)
    first = 0
    for batch in source.batches([c for c in source.columns if c in needed]):
        logits = np.stack([source.raw_logits(batch, t, first) for t in tasks], axis=1)
        categorical = np.zeros((batch.num_rows, len(applier.features)), dtype=np.int64)
        encoded = {}
        for feature in sorted(set(features) | set(applier.features)):
            codes, dictionary = encode_column(batch, feature)
            if feature in applier.features:
                categorical[:, applier.features.index(feature)] = applier.codes(feature, dictionary)[codes]
            encoded[feature] = (codes, dictionary)
        p = applier.apply(np.nan_to_num(logits), categorical)
        per_task = []
        for t, columns in enumerate(tasks):
            y, w = source.observed(batch, columns, logits[:, t], first)
            keep = w > 0
            per_task.append((keep, logits[keep, t], y[keep], p[keep, t]))
        yield batch.num_rows, {f: encoded[f] for f in features}, per_task
        first += batch.num_rows


def _read(
    calibration: CalibrationFile, source: PredictionFile, features: Sequence[str], manifest: ModelManifest | None,
    buckets: int, show_progress: bool,
) -> dict[str, TaskTables]:
    """Two passes: sums, histograms and segment sums; then the rows that place ranks exactly."""
    tasks = source.tasks(need_labels=True, only=list(calibration.tasks))
    source.require(features, "segment")
    applier = OfflineCalibration(calibration, [t.task for t in tasks], segment_vocabularies(calibration, manifest))
    tables = {t.task: TaskTables.empty(features, buckets) for t in tasks}
    with progress_bar(show_progress) as bar:
        job = bar.add_task(f"reading {source.path.name} (1/2: sums)", total=source.rows)
        for rows, encoded, per_task in _batches(source, tasks, applier, features):
            for columns, (keep, z, y, after) in zip(tasks, per_task, strict=True):
                task = tables[columns.task]
                before = sigmoid(z)
                task.before.add(before, y)
                task.after.add(after, y)
                for feature, (codes, dictionary) in encoded.items():
                    task.segments[feature].add(codes[keep], dictionary, y, before, after)
            bar.advance(job, rows)
        job = bar.add_task(f"reading {source.path.name} (2/2: ranks)", total=source.rows)
        for rows, _, per_task in _batches(source, tasks, applier, ()):
            for columns, (_, z, y, after) in zip(tasks, per_task, strict=True):
                tables[columns.task].before.add_again(sigmoid(z), y)
                tables[columns.task].after.add_again(after, y)
            bar.advance(job, rows)
    return tables


def write_report(
    calibration: CalibrationFile, source: PredictionFile, out: Path, *, manifest: ModelManifest | None = None,
    extra_segments: Sequence[str] = (), buckets: int = 10, show_progress: bool = True,
) -> Path:
    """Write `out/report.md` and `out/reliability_<task>_{before,after}.png`; returns the markdown path."""
    features = report_features(calibration, extra_segments)
    tables = _read(calibration, source, features, manifest, buckets, show_progress)
    return render_report(calibration, tables, out, predictions=str(source.path), buckets=buckets)


def report_features(calibration: CalibrationFile, extra_segments: Sequence[str]) -> list[str]:
    """The segment features a report tabulates: the file's, in order, then the extra ones."""
    return list(dict.fromkeys([s.feature for t in calibration.tasks.values() for s in t.segments]
                              + list(extra_segments)))


def render_report(
    calibration: CalibrationFile, tables: dict[str, TaskTables], out: Path, *, predictions: str, buckets: int,
) -> Path:
    """The report from complete tables, whichever engine summed them (`--engine spark` does too)."""
    features = list(next(iter(tables.values())).segments) if tables else []
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# Calibration report: version {calibration.version}", "",
             f"- calibration file fitted for: {_fitted_for(calibration)}",
             f"- predictions: `{predictions}`; observed rows only (mask = 1)",
             f"- buckets: {buckets} equal-mass buckets of the prediction; Field-RCE per feature:"
             " sum over values |sum(p) - sum(y)| / sum(y)",
             "- noise: ratio intervals are 95 % Wilson intervals from the positives count; a Field-RCE noise floor"
             " is what a perfectly calibrated model shows from sampling alone; *within noise* marks a correction"
             " the data cannot tell from chance (raw ratio's interval holds 1, or a Field-RCE change below the"
             " floor)", ""]
    for task, rows in tables.items():
        cal = calibration.tasks[task]
        m_before, m_after = rows.metrics(after=False), rows.metrics(after=True)
        lines += [f"## {task}", "", f"global calibrator: `{cal.calibrator.method}`; segment corrections:"
                  f" {', '.join(s.feature for s in cal.segments) or 'none'}", ""]
        lines += ["| metric | before | after |", "|---|---:|---:|"]
        noise = rows.noise()
        for name in [*_METRICS, *(f"field_rce.{f}" for f in features)]:
            if name == "auc":  # exact, unless a big file's mixed histogram bins outgrew the budget
                lines.append(f"| auc | {_auc(m_before, rows.before)} | {_auc(m_after, rows.after)} |")
            else:
                lines.append(f"| {name} | {_fmt(m_before[name])} | {_fmt(m_after[name])} |")
            if name == "calibration_ratio":
                lines.append(f"| calibration_ratio 95% interval | {_interval(m_before)} | {_interval(m_after)} |")
        for f in features:
            change = abs(m_before[f"field_rce.{f}"] - m_after[f"field_rce.{f}"])
            verdict = "within noise" if change < noise[f] else "beyond noise"
            lines.append(f"| field_rce.{f} noise floor (change {_fmt(change)}: {verdict}) | {_fmt(noise[f])}"
                         f" | {_fmt(noise[f])} |")
        for label, stream, m in (("before", rows.before, m_before), ("after", rows.after, m_after)):
            table = stream.buckets(buckets)
            png = out / f"reliability_{task}_{label}.png"
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
                      " | ratio before | ratio before 95% | ratio after | correction |",
                      "|---|---:|---:|---:|---:|---:|---:|---|---:|---|"]
            for value, count, y_sum, p_before, p_after in rows.segments[feature].rows():
                low, high = ratio_interval(p_before, y_sum, count)
                noisy = "n/a" if y_sum <= 0 else ("within noise" if within_noise(low, high) else "beyond noise")
                lines.append(
                    f"| {value} | {count} | {y_sum:.0f} | {y_sum / count:.5f} | {p_before / count:.5f}"
                    f" | {p_after / count:.5f} | {_ratio(p_before, y_sum)} | {_bounds(low, high)}"
                    f" | {_ratio(p_after, y_sum)} | {noisy} |"
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


def _bounds(low: float, high: float) -> str:
    return "n/a" if low != low else f"{low:.3f} – {high:.3f}"


def _interval(metrics: dict[str, float]) -> str:
    return _bounds(metrics.get("calibration_ratio_low", float("nan")), metrics.get("calibration_ratio_high", 0.0))


def _auc(metrics: dict[str, float], stream: StreamedMetrics) -> str:
    bound = stream.auc_error_bound
    return _fmt(metrics["auc"]) + (f" (±{bound:.1g})" if bound > 0 else "")


def _ratio(predicted: float, positives: float) -> str:
    return "n/a (no positives)" if positives <= 0 else f"{predicted / positives:.3f}"


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
