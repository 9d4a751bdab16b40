"""Logged candidate sets to tune and replay on: from the demo's held-out log, or synthetic.

Both write the input format of `fusionrank tune` and `fusionrank simulate` (see `logs.py`):
group_id, candidate_id, p_<task>, label_<task> (null where unobserved) and attribute columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.offline.synthetic import generator as syn

__all__ = ["demo_log_columns", "synthetic_log_columns", "write_log"]

NEW_ITEM_HOURS = 24.0  # an item younger than a day counts as new


def demo_log_columns(log: syn.DemoLog, probabilities: npt.NDArray[np.float64]) -> dict[str, Any]:
    """Columns of the demo logs. probabilities: [R, T] calibrated, in `syn.TASKS` order.

    The synthetic log draws items with replacement; a request lists an item once, so repeats of
    an item inside a group are dropped (the first is kept).
    """
    pairs = np.stack([log.group_id, log.candidate_id], axis=1)
    _, first = np.unique(pairs, axis=0, return_index=True)
    keep = np.sort(first)
    log, probabilities = log.take(keep), probabilities[keep]
    columns: dict[str, Any] = {"group_id": log.group_id, "candidate_id": log.candidate_id}
    for t, task in enumerate(syn.TASKS):
        columns[f"p_{task}"] = probabilities[:, t]
    for t, task in enumerate(syn.TASKS):
        columns[f"label_{task}"] = np.where(log.mask[:, t] > 0, log.labels[:, t], np.nan)
    age = log.numeric[:, syn.NUMERIC.index("item_age_hours")]
    columns.update({
        "creator_id": log.creator_id,
        "category": log.categorical["item_category"],
        "item_type": log.categorical["item_type"],
        "is_new": age < NEW_ITEM_HOURS,
        "sponsored": log.sponsored,
        "eligible": log.eligible,
        "margin": log.margin,
        "user_tenure": log.categorical["user_tenure"],
    })
    return columns


def synthetic_log_columns(
    n_groups: int,
    n_candidates: int,
    tasks: Sequence[str] = ("click", "like", "share", "purchase", "hide"),
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """A log of n_groups x n_candidates with correlated task predictions and sampled labels.

    Each task's logit mixes a shared relevance factor with a task-specific one, so the tasks
    agree in part and conflict in part (what makes the weights matter); the last task, if named
    hide or report, is anti-correlated with relevance.
    """
    rng = np.random.default_rng(seed)
    rows = n_groups * n_candidates
    relevance = rng.normal(0, 1, rows)
    base = np.linspace(-1.5, -4.5, len(tasks))
    columns: dict[str, Any] = {
        "group_id": np.repeat(np.arange(n_groups, dtype=np.int64), n_candidates),
        "candidate_id": np.tile(np.arange(n_candidates, dtype=np.int64), n_groups),
    }
    for t, task in enumerate(tasks):
        share = -0.5 if task in ("hide", "report") else 0.8 - 0.1 * t
        z = base[t] + share * relevance + rng.normal(0, 0.8, rows)
        p = 1.0 / (1.0 + np.exp(-z))
        columns[f"p_{task}"] = p
        label = (rng.random(rows) < p).astype(np.float64)
        label[rng.random(rows) < 0.1] = np.nan  # some outcomes are never observed
        columns[f"label_{task}"] = label
    creators = rng.zipf(1.6, rows) % 500
    columns.update({
        "creator_id": np.array([f"c{c:03d}" for c in range(500)])[creators],
        "category": np.array([f"cat{c}" for c in range(8)])[rng.integers(0, 8, rows)],
        "is_new": rng.random(rows) < 0.2,
        "sponsored": rng.random(rows) < 0.1,
        "eligible": rng.random(rows) > 0.03,
        "margin": np.round(rng.gamma(2.0, 2.0, rows), 2),
        "user_tenure": np.repeat(np.array(["new", "regular", "power"])[rng.integers(0, 3, n_groups)],
                                 n_candidates),
    })
    return columns


def write_log(path: Path, columns: dict[str, Any]) -> Path:
    """Write columns as Parquet (or CSV for a .csv path); NaN labels become nulls."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    arrays = {}
    for name, values in columns.items():
        values = np.asarray(values)
        if name.startswith("label_") and values.dtype.kind == "f":
            arrays[name] = pa.array(values, mask=np.isnan(values))
        else:
            arrays[name] = pa.array(values)
    table = pa.table(arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    return path
