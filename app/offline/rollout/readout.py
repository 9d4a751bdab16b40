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
independently for the interval of the relative change. A file is read in batches of rows into per-cluster
sums (`app.offline.rollout.sums`): memory is one batch plus the clusters and requests, whatever the rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.offline.rollout.sums import ROWS, SERVED, ArmSums, ClusterSums, Parts
from app.offline.rollout.thresholds import Rule, Thresholds

__all__ = ["ReadoutSettings", "read_rollout", "rollout_readout"]

Float = npt.NDArray[np.float64]
BATCH_ROWS = 65_536  # rows read at once: what bounds the readout's memory besides the per-cluster sums


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


def read_rollout(path: Path, settings: ReadoutSettings, batch_rows: int = BATCH_ROWS) -> dict[str, Any]:
    """The readout of a joined log file, read `batch_rows` rows at a time (only the columns it needs);
    tasks from the `fusionrank.tasks` metadata or the `label_<task>` columns."""
    import pyarrow.parquet as pq

    if not path.is_file():
        raise ValueError(f"--joined {path}: file not found (write it with `fusionrank logs join`)")
    try:
        file = pq.ParquetFile(path)
        schema = file.schema_arrow
    except Exception as exc:  # pyarrow raises several unrelated types for bad files
        raise ValueError(f"--joined {path}: not a readable Parquet file ({exc})") from None
    raw = (schema.metadata or {}).get(b"fusionrank.tasks", b"").decode()
    names = schema.names
    tasks = [t for t in raw.split(",") if t] or [n[6:] for n in names if n.startswith("label_")]
    for name in ("request_id", "position"):
        if name not in names:
            raise ValueError(f"--joined {path}: column {name!r} is missing: give the joined log of `fusionrank logs"
                             " join`")
    _check_columns(names, settings)
    wanted = {"request_id", "position", "sticky_key", "utility", "filtered_rule", settings.arm_column,
              *settings.segments, *settings.mix, *(f"{kind}_{t}" for t in tasks for kind in ("label", "mask"))}
    sums = ClusterSums(settings.thresholds.control, settings.thresholds.treatment)
    cluster_column = "sticky_key" if "sticky_key" in names else "request_id"
    for batch in file.iter_batches(batch_size=batch_rows, columns=[n for n in names if n in wanted]):
        columns = {n: np.asarray(c.to_numpy(zero_copy_only=False)) for n, c in zip(batch.schema.names,
                                                                                   batch.columns, strict=True)}
        _add(sums, columns, tasks, settings, cluster_column)
    return _report(sums, tasks, settings, cluster_column)


def rollout_readout(columns: dict[str, npt.NDArray[Any]], tasks: Sequence[str], settings: ReadoutSettings
                    ) -> dict[str, Any]:
    """-> {"arms": {...}, "comparison": {...}, "verdict": ..., "reasons": [...], "segments": {...}} of rows
    held in memory (column -> numpy); `read_rollout` reads a file in batches to the same result."""
    _check_columns(list(columns), settings)
    sums = ClusterSums(settings.thresholds.control, settings.thresholds.treatment)
    cluster_column = "sticky_key" if "sticky_key" in columns else "request_id"
    _add(sums, columns, tasks, settings, cluster_column)
    return _report(sums, tasks, settings, cluster_column)


def _check_columns(names: Sequence[str], settings: ReadoutSettings) -> None:
    if settings.arm_column not in names:
        raise ValueError(f"--arm-column {settings.arm_column!r} is not a column of the joined log;"
                         f" use one of {sorted(names)}")
    for option, wanted in (("--segment", settings.segments), ("--mix", settings.mix)):
        for column in wanted:
            if column not in names:
                raise ValueError(f"{option} {column!r} is not a column of the joined log; use one of {sorted(names)}")


def _add(sums: ClusterSums, columns: dict[str, npt.NDArray[Any]], tasks: Sequence[str], settings: ReadoutSettings,
         cluster_column: str) -> None:
    """Add one batch of rows to the per-cluster sums of every scope (all rows, then each segment value)."""
    arms = _text(columns[settings.arm_column])
    sums.seen_arms.update(np.unique(arms).tolist())
    requests = _text(columns["request_id"])
    clusters = _text(columns[cluster_column])
    clusters = np.where(clusters == "", requests, clusters)
    parts = _metric_parts(columns, tasks, settings, sums.first_rows(requests))
    sums.add(None, arms, clusters, requests, parts, np.ones(len(arms), dtype=np.bool_))
    for column in settings.segments:
        values = _text(columns[column])
        for value in np.unique(values).tolist():
            sums.add((column, value), arms, clusters, requests, parts, values == value)


def _report(sums: ClusterSums, tasks: Sequence[str], settings: ReadoutSettings, cluster_column: str
            ) -> dict[str, Any]:
    t = settings.thresholds
    for arm in (t.control, t.treatment):
        if not sums.scope(None)[arm].requests:
            raise ValueError(f"arm {arm!r} has no rows in column {settings.arm_column!r} (found"
                             f" {sorted(sums.seen_arms)}); name the arms with --control / --treatment")
    metrics = _metric_order(sums.metrics, tasks, settings)
    for rule in t.rules:
        if rule.metric not in metrics:
            raise ValueError(f"rule on {rule.metric!r}: no such metric in this log; use one of {sorted(metrics)}")
    report = _compare(sums.scope(None), metrics, settings)
    report["cluster"] = cluster_column
    segments = sums.segments()
    report["segments"] = {
        column: {value: _compare(sums.scope((column, value)), metrics, settings) for value in segments.get(column, [])}
        for column in settings.segments
    }
    return report


def _metric_order(found: set[str], tasks: Sequence[str], settings: ReadoutSettings) -> list[str]:
    """Tasks, utility, filter rules (sorted), then each --mix column's shares (sorted)."""
    order = [task for task in tasks if task in found] + (["utility"] if "utility" in found else [])
    order += sorted(m for m in found if m.startswith("filtered:"))
    for column in settings.mix:
        order += sorted(m for m in found if m.startswith(f"share:{column}="))
    return order


def _metric_parts(columns: dict[str, npt.NDArray[Any]], tasks: Sequence[str], settings: ReadoutSettings,
                  first_row: Float) -> Parts:
    """metric -> (numerator per row, denominator per row); `first_row` is 1 on a request's first row."""
    position = np.asarray(columns["position"], dtype=np.float64)  # NaN: not served
    served = np.isfinite(position) & (position < (settings.k if settings.k is not None else np.inf))
    parts: Parts = {}
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
        parts["utility"] = (np.where(served, utility, 0.0), first_row)  # one per request
    parts[ROWS] = (np.ones(len(position)), np.ones(len(position)))  # the filter rules' shared denominator
    parts[SERVED] = (served.astype(np.float64), served.astype(np.float64))  # the mix shares'
    if "filtered_rule" in columns:
        rules = _text(columns["filtered_rule"])
        for rule in sorted(set(rules.tolist()) - {""}):
            parts[f"filtered:{rule}"] = ((rules == rule).astype(np.float64), np.ones(len(rules)))
    for column in settings.mix:
        values = _text(columns[column])
        for value in sorted(set(values[served].tolist())):
            parts[f"share:{column}={value}"] = ((served & (values == value)).astype(np.float64),
                                                served.astype(np.float64))
    return parts


def _compare(sums: dict[str, ArmSums], metrics: list[str], settings: ReadoutSettings) -> dict[str, Any]:
    t = settings.thresholds
    rng = np.random.default_rng(settings.seed)
    tail = (1.0 - settings.confidence) / 2.0
    per_arm: dict[str, dict[str, Any]] = {}
    replicates: dict[str, dict[str, Float]] = {}
    for arm in (t.control, t.treatment):
        arm_sums = sums[arm]
        n_clusters = len(arm_sums.index)
        counts = rng.poisson(1.0, size=(settings.n_bootstrap, n_clusters)).astype(np.float64)
        per_arm[arm] = {"requests": len(arm_sums.requests), "clusters": n_clusters, "metrics": {}}
        replicates[arm] = {}
        for name in metrics:
            num, den = arm_sums.sorted_sums(name)
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
