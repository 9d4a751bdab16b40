"""Network families and the GBT family side by side, with a default HistGradientBoosting per task as the bar.

Data: the synthetic demo log (generated reproducibly: `--rows`, `--seed`), the demo spec
(scripts/specs/demo.yaml) with its time split; rare task: purchase (< 1 % positives). Every family
trains on the same split with the same seed and is scored on the test split (report.json of each run);
the scikit-learn baseline sees the same encoded features and the same observed train rows per task.

    PYTHONPATH=. python scripts/family_comparison.py --rows 100000 --out /tmp/families

prints a markdown table (test AUC and logloss per task and family, seconds per run).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parents[1]
FAMILIES: dict[str, dict[str, Any]] = {
    "shared_bottom": {"kind": "shared_bottom", "hidden": [64, 32]},
    "mmoe": {"kind": "mmoe", "experts": 4, "expert_hidden": [64], "tower_hidden": [16]},
    "ple": {"kind": "ple", "experts": 2, "task_experts": 1, "levels": 1, "expert_hidden": [64], "tower_hidden": [16]},
    "gbt": {"kind": "gbt"},
}
TASKS = ("click", "purchase", "hide")  # report has too few test positives at these sizes for an AUC


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import log_loss, roc_auc_score

    from app.offline.synthetic.log_file import demo_table
    from app.offline.training.batches import InMemoryLog
    from app.offline.training.encoding import fit_encoding
    from app.offline.training.gbt.fit import SplitArrays
    from app.offline.training.spec import TrainSpec
    from app.offline.training.tabular import TableSource
    from app.offline.training.train import train_spec

    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "demo.parquet"
    pq.write_table(demo_table(args.rows, seed=args.seed), data, row_group_size=50_000)
    base: dict[str, Any] = yaml.safe_load((ROOT / "scripts" / "specs" / "demo.yaml").read_text())
    base["training"].update({"epochs": args.epochs, "compare_losses": [], "seed": 0})
    base["training"].pop("losses", None)
    results: dict[str, dict[str, tuple[float, float]]] = {}
    seconds: dict[str, float] = {}
    for family, model in FAMILIES.items():
        spec = dict(base, training=dict(base["training"], model=model))
        started = time.perf_counter()
        report = train_spec(TrainSpec.model_validate(spec), data, args.out / family, show_progress=False).report
        seconds[family] = time.perf_counter() - started
        results[family] = {t: (report["tasks"][t]["overall"]["auc"], report["tasks"][t]["overall"]["logloss"])
                           for t in TASKS}
    parsed = TrainSpec.model_validate(base)
    source = TableSource.open(data, parsed.dataset)
    log = InMemoryLog.load(source, fit_encoding(source))
    train, test = SplitArrays.load(log, "train"), SplitArrays.load(log, "test")
    results["HistGradientBoosting (sklearn default)"], positives = {}, {}
    started = time.perf_counter()
    for t, task in enumerate(parsed.task_names()):
        if task not in TASKS:
            continue
        rows, scored = train.observed(t) > 0, test.observed(t) > 0
        model = HistGradientBoostingClassifier(random_state=0).fit(train.x[rows], train.labels[rows, t])
        p = model.predict_proba(test.x[scored])[:, 1]
        y = test.labels[scored, t]
        results["HistGradientBoosting (sklearn default)"][task] = (float(roc_auc_score(y, p)), float(log_loss(y, p)))
        positives[task] = (int(y.sum()), int(scored.sum()))
    seconds["HistGradientBoosting (sklearn default)"] = time.perf_counter() - started

    header = " | ".join(f"{t} AUC | {t} logloss" for t in TASKS)
    print(f"| family | {header} | seconds |")
    print("|---" * (2 * len(TASKS) + 2) + "|")
    for family, per_task in results.items():
        cells = " | ".join(f"{per_task[t][0]:.4f} | {per_task[t][1]:.4f}" for t in TASKS)
        print(f"| {family} | {cells} | {seconds[family]:.0f} |")
    print("\ntest positives / observed rows: " + ", ".join(f"{t} {p} / {n}" for t, (p, n) in positives.items()))


if __name__ == "__main__":
    main()
