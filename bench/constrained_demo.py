"""Constrained training on the demo log: does the bound on hide hold on validation, and what does it cost click?

Trains four variants of scripts/specs/demo.yaml on the same log, split and seed:
- `mtl`: every task with its loss weight (hide weight 1), no constraint;
- `no_hide`: hide weight 0, no constraint (the primary objective alone);
- `bound=<b>`: hide weight 0 and validation logloss(hide) <= b via the augmented Lagrangian.
Prints a markdown table of validation/test logloss per task, the final lambda and whether the bound held.

    .venv/bin/python -m bench.constrained_demo [--rows 300000] [--bounds 0.0595 0.0585]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from app.offline.synthetic.log_file import write_demo_log
from app.offline.training.spec import ConstraintSpec, load_spec
from app.offline.training.train import train_spec

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--bounds", type=float, nargs="+", default=[0.0595, 0.0585])
    args = parser.parse_args()
    base = load_spec(ROOT / "scripts" / "specs" / "demo.yaml")
    training = base.training.model_copy(update={"compare_losses": []})
    weights = dict(training.loss_weights)
    variants: dict[str, Any] = {
        "mtl (hide weight 1)": training,
        "no_hide (hide weight 0)": training.model_copy(update={"loss_weights": {**weights, "hide": 0.0}}),
    }
    for bound in args.bounds:
        variants[f"hide <= {bound}"] = training.model_copy(
            update={
                "loss_weights": {**weights, "hide": 0.0},
                "dual_updates_per_epoch": 10,
                "constraints": [ConstraintSpec(task="hide", max_loss=bound, rho=2.0)],
            }
        )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = write_demo_log(Path(tmp) / "demo.parquet", args.rows, args.seed)
        for name, variant in variants.items():
            spec = base.model_copy(update={"training": variant})
            result = train_spec(spec, data, Path(tmp) / name.split()[0].replace("<=", "b"), show_progress=False)
            report = result.report
            best = report["history"][report["best_epoch"] - 1]
            lam = best["lambdas"].get("hide")
            held = all(c["violation"] == 0 for c in best["constraints"].values()) if best["constraints"] else None
            test = report["tasks"]
            rows.append(
                f"| {name} | {best['valid_loss']['hide']:.5f} | {best['valid_loss']['click']:.5f} | "
                f"{test['hide']['overall']['logloss']:.5f} | {test['hide']['overall']['auc']:.4f} | "
                f"{test['click']['overall']['logloss']:.5f} | {test['click']['overall']['auc']:.4f} | "
                f"{test['purchase']['overall']['logloss']:.5f} | "
                f"{'-' if lam is None else f'{lam:.3f}'} | {'-' if held is None else ('yes' if held else 'NO')} | "
                f"{report['best_epoch']} |"
            )
    print(
        "| variant | valid hide logloss | valid click logloss | test hide logloss | test hide AUC | "
        "test click logloss | test click AUC | test purchase logloss | lambda(hide) | bound held (valid) | best epoch |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
