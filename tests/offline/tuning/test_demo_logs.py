from __future__ import annotations

from pathlib import Path

import numpy as np

from app.offline.synthetic import generator as syn
from app.offline.tuning import read_candidate_log
from app.offline.tuning.demo_logs import demo_log_columns, write_log


def test_demo_logs_are_a_valid_tuning_input(tmp_path: Path) -> None:
    log = syn.generate_log(4000, seed=1)
    probabilities = np.random.default_rng(0).uniform(0.0, 0.2, (len(log), len(syn.TASKS)))
    columns = demo_log_columns(log, probabilities)
    pairs = set(zip(columns["group_id"].tolist(), columns["candidate_id"].tolist(), strict=True))
    assert len(pairs) == len(columns["group_id"]) < len(log)  # repeats inside a request are dropped
    read = read_candidate_log(write_log(tmp_path / "logs.parquet", columns))
    assert read.tasks == syn.TASKS
    assert {"creator_id", "category", "is_new", "sponsored", "eligible", "margin", "user_tenure"} <= set(read.columns)
    # immature purchase labels stay missing (null), never a negative
    purchase = read.labels[:, :, syn.TASKS.index("purchase")][read.mask]
    assert np.isnan(purchase).any() and np.isfinite(purchase).any()
    assert read.columns["is_new"].dtype == np.bool_
