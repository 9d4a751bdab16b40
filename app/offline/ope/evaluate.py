"""Estimate a target policy's value at top k from a joined log: every estimator, interval and segment.

`evaluate_policy` replays the target policy on the logged candidates (`app.offline.tuning.replay`), lines
its slates up with the logged ones (`app.offline.ope.slates`) and runs IPS, SNIPS, DR and the direct method
per metric, overall and per value of group-level segment columns. `logged` is the logging policy's own
value on the same requests (the mean observed reward over its top k), the baseline a target must beat.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.offline.ope.estimators import (
    SlateDM,
    SlateDR,
    SlateFeedback,
    SlateIPS,
    SlateSNIPS,
    effective_sample_size,
)
from app.offline.ope.slates import logged_slates, metric_feedback
from app.offline.tuning.logs import CandidateLog, LogError, candidate_log
from app.offline.tuning.replay import PolicyReplay

__all__ = ["ESTIMATORS", "MetricEstimate", "OpeSettings", "evaluate_policy", "ope_markdown", "read_joined_log"]

ESTIMATORS = (SlateIPS(), SlateSNIPS(), SlateDR())
MIN_SEGMENT_REQUESTS = 30  # fewer requests than this: the segment is listed without estimates


@dataclass(frozen=True)
class OpeSettings:
    k: int = 10
    metrics: tuple[str, ...] = ()  # tasks and/or "utility"; empty: every task of the log
    confidence: float = 0.95
    n_bootstrap: int = 1000
    seed: int = 0
    segments: tuple[str, ...] = ()


@dataclass
class MetricEstimate:
    """One metric over one set of requests."""

    requests: int  # requests evaluated (their logged top k has every label of the metric observed)
    unobserved: int  # requests left out for an unobserved label
    logged: float  # the logging policy's observed value
    direct: float  # the direct method on the target's slates
    estimates: dict[str, dict[str, float]] = field(default_factory=dict)  # estimator -> value, lower, upper
    ess: list[float] = field(default_factory=list)  # per position
    match_top1: float = 0.0  # share of requests whose logged first item is the target's

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def read_joined_log(path: Path, tasks: list[str] | None = None) -> CandidateLog:
    """A joined log (or any candidate log): `request_id` stands for `group_id` when the file has none."""
    try:
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - the offline extra is installed with the tools
        raise LogError(path, "", "pyarrow is not installed", "pip install 'fusionrank[offline]'") from None
    if not path.is_file():
        raise LogError(path, "", "file not found", "give the joined log of `fusionrank logs join`")
    try:
        table = pq.read_table(path) if path.suffix.lower() == ".parquet" else pacsv.read_csv(path)
    except Exception as exc:  # pyarrow raises several unrelated types for bad files
        raise LogError(path, "", f"cannot read the file: {exc}", "write a valid Parquet or CSV file") from None
    if "group_id" not in table.column_names and "request_id" in table.column_names:
        table = table.append_column("group_id", table.column("request_id"))
    return candidate_log(table, path, tasks=tasks)


def evaluate_policy(log: CandidateLog, replay: PolicyReplay, settings: OpeSettings) -> dict[str, Any]:
    """-> {"overall": {metric: MetricEstimate dict}, "segments": {column: {value: {metric: ...}}}}."""
    metrics = list(settings.metrics) or list(log.tasks)
    slates = logged_slates(log, settings.k)
    per_metric = {metric: metric_feedback(log, slates, replay, metric, settings.k) for metric in metrics}
    overall = {metric: _estimate(data, log.n_groups, settings).to_dict() for metric, (data, _) in per_metric.items()}
    segments: dict[str, dict[str, dict[str, Any]]] = {}
    for column in settings.segments:
        if column not in log.columns:
            raise LogError(log.path, column, "segment column is missing", f"use one of {sorted(log.columns)}")
        values = log.columns[column][log.starts]  # the group's first row speaks for the group
        labels = np.array(["(missing)" if v is None or v != v else str(v) for v in values.tolist()])
        segments[column] = {}
        for value in sorted(set(labels.tolist())):
            in_segment = labels == value
            segments[column][value] = {}
            for metric, (data, keep) in per_metric.items():
                chosen = np.flatnonzero(in_segment[keep])
                total = int(in_segment.sum())
                if len(chosen) < MIN_SEGMENT_REQUESTS:
                    segments[column][value][metric] = {"requests": len(chosen), "unobserved": total - len(chosen)}
                    continue
                segments[column][value][metric] = _estimate(data.take(chosen), total, settings).to_dict()
    return {"k": settings.k, "confidence": settings.confidence, "n_bootstrap": settings.n_bootstrap,
            "overall": overall, "segments": segments}


def _estimate(data: SlateFeedback, total: int, settings: OpeSettings) -> MetricEstimate:
    if data.n_requests == 0:
        return MetricEstimate(0, total, float("nan"), float("nan"))
    result = MetricEstimate(
        requests=data.n_requests, unobserved=total - data.n_requests,
        logged=float(data.reward.sum(axis=1).mean()), direct=SlateDM().estimate_policy_value(data),
        ess=[round(float(e), 2) for e in effective_sample_size(data)],
        match_top1=float(data.target[:, 0].mean()),
    )
    for estimator in ESTIMATORS:
        interval = estimator.estimate_interval(data, confidence=settings.confidence,
                                               n_bootstrap=settings.n_bootstrap, seed=settings.seed)
        result.estimates[estimator.name] = {"value": interval.value, "lower": interval.lower, "upper": interval.upper}
    return result


def ope_markdown(label: str, report: dict[str, Any]) -> str:
    """The report.md section of one target policy."""
    pct = round(100 * report["confidence"])
    lines = [f"### Off-policy estimates: {label} (value = expected sum over the top {report['k']} per request)", "",
             f"| metric | requests | logged | DM | IPS | SNIPS | DR ({pct}% interval) | ESS at 1 / at k |",
             "|---|---|---|---|---|---|---|---|"]
    for metric, m in report["overall"].items():
        lines.append(_row(metric, m))
    for column, values in report["segments"].items():
        lines += ["", f"By `{column}`:", "", "| segment | metric | requests | logged | DR | interval |",
                  "|---|---|---|---|---|---|"]
        for value, per_metric in values.items():
            for metric, m in per_metric.items():
                if "estimates" not in m:
                    lines.append(f"| {value} | {metric} | {m['requests']} | - | too few requests | - |")
                    continue
                dr = m["estimates"]["dr"]
                lines.append(f"| {value} | {metric} | {m['requests']} | {m['logged']:.4g} | {dr['value']:.4g} |"
                             f" [{dr['lower']:.4g}, {dr['upper']:.4g}] |")
    return "\n".join(lines) + "\n"


def _row(metric: str, m: dict[str, Any]) -> str:
    e = m["estimates"]
    dr = e["dr"]
    ess = m["ess"]
    return (f"| {metric} | {m['requests']} | {m['logged']:.4g} | {m['direct']:.4g} | {e['ips']['value']:.4g} |"
            f" {e['snips']['value']:.4g} | {dr['value']:.4g} [{dr['lower']:.4g}, {dr['upper']:.4g}] |"
            f" {ess[0]:.0f} / {ess[-1]:.0f} |")
