"""A small predictions log whose raw logits are miscalibrated overall, along buckets and per segment."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.serving.calibration import sigmoid

TENURE_SHIFT = {"new": -0.6, "casual": 0.0, "regular": 0.2, "power": 0.4}
TYPE_SHIFT = {"video": 0.0, "article": -0.4, "product": 0.5, "live": 0.3}


def predictions_columns(rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    tenure = rng.choice(list(TENURE_SHIFT), rows, p=[0.15, 0.35, 0.35, 0.15])
    item_type = rng.choice(list(TYPE_SHIFT), rows, p=[0.4, 0.25, 0.25, 0.1])
    shift = np.vectorize(TENURE_SHIFT.get)(tenure) + np.vectorize(TYPE_SHIFT.get)(item_type)
    columns: dict[str, np.ndarray] = {
        "group_id": np.arange(rows, dtype=np.int64) // 20,
        "user_tenure": tenure,
        "item_type": item_type,
    }
    for task, base, slope in (("click", -2.6, 0.8), ("purchase", -4.8, 1.2)):
        z = rng.normal(base, 1.0, rows)
        truth = slope * (z - base) + base - 0.9 + shift  # over-predicts, wrong slope, segment shifts
        columns[f"logit_{task}"] = z
        columns[f"label_{task}"] = (rng.random(rows) < sigmoid(truth)).astype(np.int8)
        columns[f"mask_{task}"] = (rng.random(rows) > 0.1).astype(np.int8)
    return columns


def write_predictions(path: Path, rows: int, seed: int = 0) -> Path:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    table = pa.table(predictions_columns(rows, seed))
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path, row_group_size=max(1, rows // 3))
    return path


def report_columns(rows: int = 5000, seed: int = 5) -> dict[str, np.ndarray]:
    """`predictions_columns` with click logits rounded to 0.1 (ties across bucket edges) and every
    97th user_tenure null: the input of tests/fixtures/calibration_report."""
    columns = predictions_columns(rows, seed)
    columns["logit_click"] = np.round(columns["logit_click"], 1)
    tenure = columns["user_tenure"].astype(object)
    tenure[::97] = None
    columns["user_tenure"] = tenure
    return columns
