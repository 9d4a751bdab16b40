"""`PredictionFile.batches` streams a Parquet file in bounded memory, whatever its size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.offline.calibration import PredictionFile

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def test_parquet_batches_hold_one_row_group_at_a_time(tmp_path: Path) -> None:
    groups, rows = 12, 40_000
    path = tmp_path / "many_groups.parquet"
    rng = np.random.default_rng(0)
    with pq.ParquetWriter(path, pa.schema([("logit_click", pa.float64()), ("label_click", pa.float64())]),
                          compression="none") as writer:
        for _ in range(groups):
            writer.write_table(pa.table({"logit_click": rng.normal(size=rows), "label_click": rng.random(rows)}))
    group_bytes = rows * 2 * 8
    base = pa.total_allocated_bytes()
    peak, seen = 0, 0
    for batch in PredictionFile(path).batches(["logit_click", "label_click"], batch_rows=10_000):
        peak = max(peak, pa.total_allocated_bytes() - base)
        seen += batch.num_rows
    assert seen == groups * rows
    # A reader that pre-buffers every row group holds the whole file (12 groups) before the first batch.
    assert peak < 3 * group_bytes, f"{peak / group_bytes:.1f} row groups held"
