"""Moo-GBT against the unconstrained GBT on a bound: the table of docs/training.md (constrained GBT).

Trains the spec's primary task without constraints and with each `--bounds` value (the spec's first
constraint, its rho and penalty), and scores every model on the constrained task's labels (C_t: the
primary score's logloss against them) and on the primary task. A third kind of row, "unconstrained,
stopped early", is what a user could do without Moo-GBT: the unconstrained booster cut at the round
with the best primary validation loss among the rounds that meet the bound.

    PYTHONPATH=. python scripts/gbt_constrained.py --spec scripts/specs/adult_census_constrained.yaml \
        --data ~/.cache/fusionrank/adult/data --bounds 0.40 0.35 --out /tmp/moo
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, required=True, help="a gbt spec with one constraint")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--bounds", type=float, nargs="+", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from app.offline.metrics import auc
    from app.offline.training.batches import InMemoryLog
    from app.offline.training.encoding import fit_encoding
    from app.offline.training.gbt.fit import SplitArrays
    from app.offline.training.gbt.moo import logloss, sigmoid
    from app.offline.training.gbt.ranker import GBTRanker
    from app.offline.training.spec import TrainSpec
    from app.offline.training.tabular import TableSource
    from app.offline.training.train import train_spec

    base: dict[str, Any] = yaml.safe_load(args.spec.read_text())
    (constraint,) = base["training"]["constraints"]
    parsed = TrainSpec.model_validate(base)
    tasks = parsed.task_names()
    primary = parsed.training.model.gbt.primary or tasks[0]
    p, c = tasks.index(primary), tasks.index(constraint["task"])
    source = TableSource.open(args.data, parsed.dataset)
    log = InMemoryLog.load(source, fit_encoding(source))
    valid, test = SplitArrays.load(log, "valid"), SplitArrays.load(log, "test")
    n = len(parsed.dataset.numeric)

    def scores(model: GBTRanker, split: SplitArrays, rounds: int | None = None) -> np.ndarray:
        if rounds is None:
            return model.raw_scores(split.x[:, :n], split.x[:, n:].astype(np.int64))[:, p]
        return np.asarray(model.boosters[p].predict(split.x, raw_score=True, num_iteration=rounds)) + model.offsets[p]

    def row(name: str, model: GBTRanker, bound: float, rounds: int | None, extra: str) -> str:
        zv, zt = scores(model, valid, rounds), scores(model, test, rounds)
        cv, ct = logloss(zv, valid.labels[:, c], valid.observed(c)), logloss(zt, test.labels[:, c], test.observed(c))
        seen = test.observed(p) > 0
        y = test.labels[seen, p]
        prob = sigmoid(zt[seen])
        return (
            f"| {name} | {cv:.4f} | {'yes' if cv <= bound else 'no'} | {ct:.4f} | {auc(prob, y):.4f} | "
            f"{logloss(zt[seen], y, np.ones_like(y)):.4f} | {prob.sum() / y.sum():.3f} | {extra} |"
        )

    lines = [
        f"| model | valid C_{constraint['task']} | bound met | test C_{constraint['task']} | test {primary} AUC | "
        f"test {primary} logloss | test {primary} calibration ratio | selected round, lambda, seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    plain = copy.deepcopy(base)
    plain["training"]["constraints"] = []
    started = time.perf_counter()
    run = train_spec(TrainSpec.model_validate(plain), args.data, args.out / "unconstrained", show_progress=False)
    seconds = time.perf_counter() - started
    model = GBTRanker.load(run.run / "gbt", tasks)
    rounds = model.boosters[p].current_iteration()
    lines.append(row("unconstrained GBT", model, min(args.bounds), None, f"{rounds}, -, {seconds:.1f}"))
    for bound in args.bounds:
        zs = [scores(model, valid, k) for k in range(1, rounds + 1)]
        feasible = [(logloss(z, valid.labels[:, p], valid.observed(p)), k) for k, z in enumerate(zs, start=1)
                    if logloss(z, valid.labels[:, c], valid.observed(c)) <= bound]
        if feasible:
            cut = min(feasible)[1]
            lines.append(row(f"unconstrained, stopped early for bound {bound:g}", model, bound, cut, f"{cut}, -, -"))
        spec = copy.deepcopy(base)
        spec["training"]["constraints"][0]["max_loss"] = bound
        started = time.perf_counter()
        result = train_spec(TrainSpec.model_validate(spec), args.data, args.out / f"bound_{bound:g}",
                            show_progress=False)
        seconds = time.perf_counter() - started
        dual = result.report["gbt"]["dual"]
        at = dual["rounds"].index(dual["selected_round"])
        lam = dual["constraints"][constraint["task"]]["lambda"][at]
        best = dual["constraints"][constraint["task"]]["best_reachable"]
        constrained = GBTRanker.load(result.run / "gbt", tasks)
        extra = f"{dual['selected_round']}, {lam:.3f}, {seconds:.1f}" + ("" if dual["feasible"] else
                                                                        f" (infeasible: best reachable {best:.4f})")
        lines.append(row(f"Moo-GBT, bound {bound:g}", constrained, bound, None, extra))
        print(f"report with the dual trajectory: {result.run / 'report.md'}, {result.run / 'dual_trajectory.png'}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
