"""Wall time of `fusionrank tune` on 10,000 groups x 100 candidates x 5 tasks (the issue's bar: < 1 min).

Each tuner runs end to end as a user runs it (a fresh `python -m app.cli tune ...` process: imports,
reading the 1,000,000-row Parquet log, fitting, writing weights.json); the figures go to
bench/RESULTS.md with the machine and the date.

    python bench/tuning_bench.py [--groups 10000] [--candidates 100]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from app.offline.tuning import TaskMatrix, read_candidate_log
from app.offline.tuning.constrained import TopKEvaluator
from app.offline.tuning.demo_logs import synthetic_log_columns, write_log
from app.offline.tuning.objectives import task_gains
from bench.common import ROOT, append_results, machine, now

TASKS = ("click", "like", "share", "purchase", "hide")
GAP_TARGETS = {"click": 0.3, "like": 0.25, "share": 0.2, "purchase": 0.15, "hide": 0.1}
HIDDEN_WEIGHTS = np.array([0.35, 0.25, 0.2, 0.1, 0.1])  # regret targets are the split these weights give


def run(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "app.cli", *command, "--no-progress"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--candidates", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        logs = write_log(folder / "logs.parquet", synthetic_log_columns(args.groups, args.candidates, TASKS, seed=1))
        start = time.perf_counter()
        log = read_candidate_log(logs, attributes=False)
        read_s = time.perf_counter() - start
        matrix = TaskMatrix.from_log(log, TASKS, {"hide"})
        gains = task_gains(log, matrix, labels=False)
        regrets = matrix.regrets(HIDDEN_WEIGHTS, gains, matrix.ideal_dcgs(gains))
        regret_targets = dict(zip(TASKS, regrets / regrets.sum(), strict=True))

        rows = []
        for name, targets, extra in (
            ("ndcg-gap", GAP_TARGETS, []),
            ("regret", regret_targets, ["--predictions"]),
        ):
            out = folder / f"{name}.json"
            flags = [f for t, v in targets.items() for f in ("--target", f"{t}={v:.6f}")]
            wall = run(["tune", name, "--logs", str(logs), *flags, "--negative", "hide", *extra, "--out", str(out)])
            data = json.loads(out.read_text())
            achieved = ", ".join(f"{t} {targets[t]:.3f}→{data['achieved'][t]:.3f}" for t in TASKS)
            rows.append(f"| tune {name} | {wall:.1f} | {data['seconds']:.1f} | {data['evaluations']} | "
                        f"{data['abs_error_sum']:.4f} | {achieved} |")
            print(rows[-1])
        # a bound that binds: 40% of the way from ranking by hide alone to ranking by purchase alone
        evaluate = TopKEvaluator(log, matrix, primary="purchase", labels=True, k=10, bounded=["hide"])
        low, high = (float(evaluate(np.eye(len(TASKS))[TASKS.index(t)]).outcomes[0]) for t in ("hide", "purchase"))
        bound = low + 0.4 * (high - low)
        out = folder / "constrained.json"
        wall = run(["tune", "constrained", "--logs", str(logs), "--primary", "purchase", "--bound", f"hide={bound:.5f}",
                    "--negative", "hide", "--sweep", "0", "--out", str(out)])
        data = json.loads(out.read_text())
        held = data["top_k_mean_prediction"]["holdout"]["hide"]
        rows.append(f"| tune constrained (bound p_hide@10 <= {bound:.5f}, no sweep) | {wall:.1f} | "
                    f"{data['seconds']:.1f} | "
                    f"{data['evaluations']} | – | NDCG@10 purchase held-out {data['primary']['holdout']:.4f}; "
                    f"held-out mean p_hide@10 {held:.5f} (meets bound: {data['feasible']['holdout']}) |")
        print(rows[-1])
    append_results("bench/tuning_bench.py", [
        f"machine: {machine()}  ",
        f"date: {now()}; synthetic log of {args.groups:,} groups x {args.candidates} candidates x {len(TASKS)} tasks"
        f" (hide negative); reading the Parquet log in process takes {read_s:.1f} s. Wall = a fresh CLI process"
        " (imports + read + fit + write); fit = the tuner's own timer.",
        "",
        "| command | wall s | fit s | evaluations | abs fraction error sum | targets → achieved |",
        "|---|---:|---:|---:|---:|---|",
        *rows,
    ])


if __name__ == "__main__":
    main()
