"""Read a canary out of a joined log: per-arm outcome rates, utility, guardrail and mix shares with
intervals, the relative change of the treatment against the control, and a ship / hold / abort verdict.

Metrics (each a ratio of sums, computed per arm):
- `<task>`: the task's outcome rate per served impression in the top k (rows whose label is observed and
  mature: `mask_<task>` = 1);
- `utility`: the logged utility summed over the top k, per request;
- `filtered:<rule>`: the share of scored candidates a guardrail or slate rule removed;
- `share:<column>=<value>`: the share of served slots in the top k whose `column` holds `value` (the served mix).
Intervals are percentile Poisson bootstraps over clusters: the sticky key (`sticky_key`, the unit the canary
assigns; requests of one user are correlated) when logged, else the request. The two arms are resampled
independently for the interval of the relative change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.offline.rollout.thresholds import Rule, Thresholds

__all__ = ["ReadoutSettings", "read_joined_columns", "rollout_readout"]

Float = npt.NDArray[np.float64]
_CHUNK = 64


@dataclass(frozen=True)
class ReadoutSettings:
    thresholds: Thresholds
    arm_column: str = "arm"
    k: int | None = None  # top k positions counted (None: every served position)
    segments: tuple[str, ...] = ()
    mix: tuple[str, ...] = ()
    confidence: float = 0.95
    n_bootstrap: int = 500
    seed: int = 0


def read_joined_columns(path: Path) -> tuple[dict[str, npt.NDArray[Any]], list[str]]:
    """(every column of a joined log as numpy, the tasks) — tasks from the `fusionrank.tasks` metadata or
    the `label_<task>` columns."""
    import pyarrow.parquet as pq

    if not path.is_file():
        raise ValueError(f"--joined {path}: file not found (write it with `fusionrank logs join`)")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for bad files
        raise ValueError(f"--joined {path}: not a readable Parquet file ({exc})") from None
    raw = (table.schema.metadata or {}).get(b"fusionrank.tasks", b"").decode()
    tasks = [t for t in raw.split(",") if t] or [n[6:] for n in table.column_names if n.startswith("label_")]
    columns = {name: np.asarray(table.column(name).to_numpy(zero_copy_only=False)) for name in table.column_names}
    for name in ("request_id", "position"):
        if name not in columns:
            raise ValueError(f"--joined {path}: column {name!r} is missing: give the joined log of `fusionrank logs"
                             " join`")
    return columns, tasks


def rollout_readout(columns: dict[str, npt.NDArray[Any]], tasks: Sequence[str], settings: ReadoutSettings
                    ) -> dict[str, Any]:
    """-> {"arms": {...}, "comparison": {...}, "verdict": ..., "reasons": [...], "segments": {...}}."""
    t = settings.thresholds
    if settings.arm_column not in columns:
        raise ValueError(f"--arm-column {settings.arm_column!r} is not a column of the joined log;"
                         f" use one of {sorted(columns)}")
    arms = _text(columns[settings.arm_column])
    for arm in (t.control, t.treatment):
        if not (arms == arm).any():
            raise ValueError(f"arm {arm!r} has no rows in column {settings.arm_column!r} (found"
                             f" {sorted(set(arms.tolist()))}); name the arms with --control / --treatment")
    metrics = _metric_parts(columns, tasks, settings)
    for rule in t.rules:
        if rule.metric not in metrics:
            raise ValueError(f"rule on {rule.metric!r}: no such metric in this log; use one of {sorted(metrics)}")
    cluster_column = "sticky_key" if "sticky_key" in columns else "request_id"
    clusters = _text(columns[cluster_column])
    clusters = np.where(clusters == "", _text(columns["request_id"]), clusters)
    report = _compare(metrics, arms, clusters, _text(columns["request_id"]), np.ones(len(arms), dtype=np.bool_),
                      settings)
    report["cluster"] = cluster_column
    report["segments"] = {}
    for column in settings.segments:
        if column not in columns:
            raise ValueError(f"--segment {column!r} is not a column of the joined log; use one of {sorted(columns)}")
        values = _text(columns[column])
        report["segments"][column] = {
            value: _compare(metrics, arms, clusters, _text(columns["request_id"]), values == value, settings)
            for value in sorted(set(values.tolist()))
        }
    return report


def _metric_parts(columns: dict[str, npt.NDArray[Any]], tasks: Sequence[str], settings: ReadoutSettings
                  ) -> dict[str, tuple[Float, Float]]:
    """metric -> (numerator per row, denominator per row)."""
    position = np.asarray(columns["position"], dtype=np.float64)  # NaN: not served
    served = np.isfinite(position) & (position < (settings.k if settings.k is not None else np.inf))
    parts: dict[str, tuple[Float, Float]] = {}
    for task in tasks:
        label_name = f"label_{task}"
        if label_name not in columns:
            continue
        label = np.asarray(columns[label_name], dtype=np.float64)
        observed = ~np.isnan(label)
        if f"mask_{task}" in columns:
            observed &= np.nan_to_num(np.asarray(columns[f"mask_{task}"], dtype=np.float64)) > 0
        counted = served & observed
        parts[task] = (np.where(counted, np.nan_to_num(label), 0.0), counted.astype(np.float64))
    if "utility" in columns:
        utility = np.nan_to_num(np.asarray(columns["utility"], dtype=np.float64))
        first_row = np.zeros(len(utility))  # one per request, wherever its rows lie in the file
        first_row[np.unique(_text(columns["request_id"]), return_index=True)[1]] = 1.0
        parts["utility"] = (np.where(served, utility, 0.0), first_row)
    if "filtered_rule" in columns:
        rules = _text(columns["filtered_rule"])
        for rule in sorted(set(rules.tolist()) - {""}):
            parts[f"filtered:{rule}"] = ((rules == rule).astype(np.float64), np.ones(len(rules)))
    for column in settings.mix:
        if column not in columns:
            raise ValueError(f"--mix {column!r} is not a column of the joined log; use one of {sorted(columns)}")
        values = _text(columns[column])
        for value in sorted(set(values[served].tolist())):
            parts[f"share:{column}={value}"] = ((served & (values == value)).astype(np.float64),
                                                served.astype(np.float64))
    return parts


def _compare(metrics: dict[str, tuple[Float, Float]], arms: npt.NDArray[np.str_], clusters: npt.NDArray[np.str_],
             requests: npt.NDArray[np.str_], rows: npt.NDArray[np.bool_], settings: ReadoutSettings) -> dict[str, Any]:
    t = settings.thresholds
    rng = np.random.default_rng(settings.seed)
    tail = (1.0 - settings.confidence) / 2.0
    per_arm: dict[str, dict[str, Any]] = {}
    replicates: dict[str, dict[str, Float]] = {}
    for arm in (t.control, t.treatment):
        chosen = rows & (arms == arm)
        codes = np.unique(clusters[chosen], return_inverse=True)[1].reshape(-1)
        n_clusters = int(codes.max()) + 1 if len(codes) else 0
        counts = rng.poisson(1.0, size=(settings.n_bootstrap, n_clusters)).astype(np.float64)
        per_arm[arm] = {"requests": len(np.unique(requests[chosen])), "clusters": n_clusters, "metrics": {}}
        replicates[arm] = {}
        for name, (numerator, denominator) in metrics.items():
            num = np.bincount(codes, weights=numerator[chosen], minlength=n_clusters)
            den = np.bincount(codes, weights=denominator[chosen], minlength=n_clusters)
            value = num.sum() / den.sum() if den.sum() > 0 else float("nan")
            boot = _ratio(counts @ num, counts @ den)
            replicates[arm][name] = boot
            lower, upper = np.nanquantile(boot, [tail, 1 - tail]) if np.isfinite(boot).any() else (np.nan, np.nan)
            per_arm[arm]["metrics"][name] = {"value": float(value), "lower": float(lower), "upper": float(upper),
                                             "denominator": float(den.sum())}
    comparison = {}
    for name in metrics:
        a, b = per_arm[t.control]["metrics"][name]["value"], per_arm[t.treatment]["metrics"][name]["value"]
        change = _ratio(replicates[t.treatment][name], replicates[t.control][name]) - 1.0
        finite = np.isfinite(change) & (replicates[t.control][name] != 0)
        lower, upper = np.quantile(change[finite], [tail, 1 - tail]) if finite.any() else (np.nan, np.nan)
        comparison[name] = {"relative_change": b / a - 1.0 if a else float("nan"), "lower": float(lower),
                            "upper": float(upper)}
    verdict, reasons = _verdict(t, per_arm, comparison)
    return {"arms": per_arm, "comparison": comparison, "verdict": verdict, "reasons": reasons}


def _verdict(t: Thresholds, per_arm: dict[str, dict[str, Any]], comparison: dict[str, dict[str, float]]
             ) -> tuple[str, list[str]]:
    aborts, holds, passes = [], [], []
    for rule in t.rules:
        c = comparison[rule.metric]
        lo, hi = c["lower"], c["upper"]
        text = f"{rule.metric}: change {c['relative_change']:+.2%} [{lo:+.2%}, {hi:+.2%}]"
        if not (np.isfinite(lo) and np.isfinite(hi)):
            holds.append(f"{rule.metric}: no data in one arm")
        elif _aborts(rule, lo, hi):
            aborts.append(f"{text} is surely past abort_at {rule.abort_at:+.2%}")
        elif _passes(rule, lo, hi):
            passes.append(f"{text} clears ship_at {rule.ship_at:+.2%}")
        else:
            holds.append(f"{text} does not yet clear ship_at {rule.ship_at:+.2%}")
    short = [arm for arm in (t.control, t.treatment) if per_arm[arm]["requests"] < t.min_requests]
    if aborts:
        return "abort", aborts + holds + passes
    if short:
        holds.insert(0, f"{', '.join(short)} has fewer than min_requests {t.min_requests} requests")
    if holds:
        return "hold", holds + passes
    return "ship", passes


def _aborts(rule: Rule, lo: float, hi: float) -> bool:
    return hi < rule.abort_at if rule.direction == "increase" else lo > rule.abort_at


def _passes(rule: Rule, lo: float, hi: float) -> bool:
    return lo >= rule.ship_at if rule.direction == "increase" else hi <= rule.ship_at


def _ratio(numerator: Float, denominator: Float) -> Float:
    safe = np.where(denominator != 0, denominator, 1.0)
    return np.asarray(np.where(denominator != 0, numerator / safe, np.nan), dtype=np.float64)


def _text(values: npt.NDArray[Any]) -> npt.NDArray[np.str_]:
    """A column as strings, '' for null."""
    return np.array(["" if v is None or (isinstance(v, float) and v != v) else str(v) for v in values.tolist()])
