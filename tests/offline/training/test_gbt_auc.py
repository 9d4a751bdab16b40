"""The GBT family against a default scikit-learn HistGradientBoostingClassifier per task, same split.

The fast version of the worked example's bar (docs/training.md: UCI Adult, scripts/family_comparison.py),
on data a test can generate: the synthetic demo log, 60 000 impressions (seed 11), the demo spec's
time split. Tasks with
positives in the test split: click (~5 % positives), purchase (rare, ~0.6 %) and hide (~2 %); report
has no test positive at this size, so its AUC is undefined and it is left out. Both models see the
same encoded features (numerics, then categorical codes as numbers) and the same train rows per task
(observed labels only); HistGradientBoosting holds out its own 10 % of them for early stopping, the
GBT family stops on the validation split. Both run on one thread (HistGradientBoosting's OpenMP
threads only contend with the other tests' processes on a loaded machine).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from app.offline.synthetic.log_file import demo_table
from app.offline.training.batches import InMemoryLog
from app.offline.training.encoding import fit_encoding
from app.offline.training.gbt.fit import SplitArrays
from app.offline.training.spec import TrainSpec
from app.offline.training.tabular import TableSource
from app.offline.training.train import train_spec
from tests.offline.conftest import tiny_spec


def test_gbt_auc_is_at_least_histgradientboosting_per_task(tmp_path: Path) -> None:
    data = tmp_path / "demo.parquet"
    pq.write_table(demo_table(60_000, seed=11), data, row_group_size=20_000)
    spec = tiny_spec(compare_losses=[], model={"kind": "gbt"})
    spec["training"].pop("losses", None)
    parsed = TrainSpec.model_validate(spec)
    run = train_spec(parsed, data, tmp_path / "run", show_progress=False)
    source = TableSource.open(data, parsed.dataset)
    log = InMemoryLog.load(source, fit_encoding(source))
    train, test = SplitArrays.load(log, "train"), SplitArrays.load(log, "test")
    table = {}
    for t, task in enumerate(["click", "purchase", "hide"]):
        rows, scored = train.observed(t) > 0, test.observed(t) > 0
        with threadpool_limits(1):
            baseline = HistGradientBoostingClassifier(random_state=0).fit(train.x[rows], train.labels[rows, t])
        hgb = roc_auc_score(test.labels[scored, t], baseline.predict_proba(test.x[scored])[:, 1])
        table[task] = (run.report["tasks"][task]["overall"]["auc"], float(hgb), int(test.labels[scored, t].sum()))
    print(table)  # (GBT, HistGradientBoosting, test positives) per task (pytest -s)
    for task, (gbt, hgb, positives) in table.items():
        assert positives >= 20, task
        assert gbt >= hgb, (task, gbt, hgb)
    assert np.isfinite([v[0] for v in table.values()]).all()
