"""Network families and the GBT family side by side, with a default HistGradientBoosting per task as the bar.

Two data sources:

- `--spec S --data D`: any spec and its data, e.g. UCI Adult as prepared by scripts/adult_census.py
  (`--spec scripts/specs/adult_census.yaml --data ~/.cache/fusionrank/adult/data`);
- `--rows N --seed K` (no `--data`): the synthetic demo log, generated reproducibly, with the demo spec.

Every family trains on the spec's split with the spec's seed and is scored on the test split
(report.json of each run: AUC, logloss, calibration ratio per task). The scikit-learn bar,
`HistGradientBoostingClassifier()` with its defaults, sees the same encoded features (numerics, then
categorical codes as numbers, which is what a default HistGB does with a numeric matrix) and the same
observed train rows per task; a second row gives it native categorical splits
(`categorical_features=` the categorical columns), the strongest out-of-the-box HistGB. Tasks with
fewer than 20 test positives are left out (no meaningful AUC).

    PYTHONPATH=. python scripts/family_comparison.py --spec scripts/specs/adult_census.yaml \
        --data ~/.cache/fusionrank/adult/data --out /tmp/families

prints a markdown table (test AUC, logloss and calibration ratio per task and family, seconds per run).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parents[1]
FAMILIES: dict[str, dict[str, Any]] = {
    "shared_bottom": {"kind": "shared_bottom", "hidden": [64, 32]},
    "mmoe": {"kind": "mmoe", "experts": 4, "expert_hidden": [64], "tower_hidden": [16]},
    "ple": {"kind": "ple", "experts": 2, "task_experts": 1, "levels": 1, "expert_hidden": [64], "tower_hidden": [16]},
    "gbt": {"kind": "gbt"},
}
MIN_TEST_POSITIVES = 20
Row = dict[str, tuple[float, float, float]]  # task -> (AUC, logloss, calibration ratio)


def _spec_and_data(args: argparse.Namespace) -> tuple[dict[str, Any], Path]:
    if args.data is not None:
        return yaml.safe_load(args.spec.read_text()), args.data
    from app.offline.synthetic.log_file import demo_table

    data = args.out / "demo.parquet"
    pq.write_table(demo_table(args.rows, seed=args.seed), data, row_group_size=50_000)
    base: dict[str, Any] = yaml.safe_load(args.spec.read_text())
    base["training"].update({"compare_losses": [], "seed": 0})
    base["training"].pop("losses", None)
    return base, data


def histgb(base: dict[str, Any], data: Path) -> tuple[dict[str, Row], dict[str, float], dict[str, tuple[int, int]]]:
    """HistGradientBoosting per task (defaults; then native categoricals): rows, seconds, test positives."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import log_loss, roc_auc_score

    from app.offline.training.batches import InMemoryLog
    from app.offline.training.encoding import fit_encoding
    from app.offline.training.gbt.fit import SplitArrays
    from app.offline.training.spec import TrainSpec
    from app.offline.training.tabular import TableSource

    parsed = TrainSpec.model_validate(base)
    source = TableSource.open(data, parsed.dataset)
    log = InMemoryLog.load(source, fit_encoding(source))
    train, test = SplitArrays.load(log, "train"), SplitArrays.load(log, "test")
    categorical = np.arange(train.x.shape[1]) >= len(parsed.dataset.numeric)
    variants = {
        "HistGradientBoosting (sklearn defaults)": {},
        "HistGradientBoosting (defaults + native categoricals)": {"categorical_features": categorical},
    }
    rows: dict[str, Row] = {}
    seconds: dict[str, float] = {}
    positives: dict[str, tuple[int, int]] = {}
    for name, extra in variants.items():
        rows[name] = {}
        started = time.perf_counter()
        for t, task in enumerate(parsed.task_names()):
            fit, scored = train.observed(t) > 0, test.observed(t) > 0
            y = test.labels[scored, t]
            positives[task] = (int(y.sum()), int(scored.sum()))
            if y.sum() < MIN_TEST_POSITIVES:
                continue
            model = HistGradientBoostingClassifier(random_state=0, **extra).fit(train.x[fit], train.labels[fit, t])
            p = model.predict_proba(test.x[scored])[:, 1]
            rows[name][task] = (float(roc_auc_score(y, p)), float(log_loss(y, p)), float(p.sum() / y.sum()))
        seconds[name] = time.perf_counter() - started
    return rows, seconds, positives


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "scripts" / "specs" / "demo.yaml")
    parser.add_argument("--data", type=Path, default=None, help="the spec's data; default: a synthetic demo log")
    parser.add_argument("--rows", type=int, default=100_000, help="synthetic demo log only")
    parser.add_argument("--seed", type=int, default=11, help="synthetic demo log only")
    parser.add_argument("--epochs", type=int, default=None, help="network epochs at most (default: the spec's)")
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated subset of the default")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from app.offline.training.spec import TrainSpec
    from app.offline.training.train import train_spec

    args.out.mkdir(parents=True, exist_ok=True)
    base, data = _spec_and_data(args)
    if args.epochs is not None:
        base["training"]["epochs"] = args.epochs
    results: dict[str, Row] = {}
    seconds: dict[str, float] = {}
    for family in args.families.split(","):
        model = FAMILIES[family]
        training = {k: v for k, v in base["training"].items() if not (family == "gbt" and k == "compare_losses")}
        spec = dict(base, training=dict(training, model=model))
        started = time.perf_counter()
        report = train_spec(TrainSpec.model_validate(spec), data, args.out / family, show_progress=False).report
        seconds[family] = time.perf_counter() - started
        results[family] = {
            task: (m["overall"]["auc"], m["overall"]["logloss"], m["overall"]["calibration_ratio"])
            for task, m in report["tasks"].items()
        }
    reference, reference_seconds, positives = histgb(base, data)
    results.update(reference)
    seconds.update(reference_seconds)

    tasks = [t for t, (p, _) in positives.items() if p >= MIN_TEST_POSITIVES]
    header = " | ".join(f"{t} AUC | {t} logloss | {t} ratio" for t in tasks)
    print(f"| family | {header} | seconds |")
    print("|---" * (3 * len(tasks) + 2) + "|")
    for family, per_task in results.items():
        cells = " | ".join(f"{per_task[t][0]:.4f} | {per_task[t][1]:.4f} | {per_task[t][2]:.3f}" for t in tasks)
        print(f"| {family} | {cells} | {seconds[family]:.1f} |")
    print("\ntest positives / observed rows: " + ", ".join(f"{t} {p} / {n}" for t, (p, n) in positives.items()))


if __name__ == "__main__":
    main()
