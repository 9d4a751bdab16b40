"""Cost of a policy's `ranking` steps (`app.serving.ranking`, `app.serving.forms`) at 1000 candidates, top_k 50.

In process, on the arrays the scorer hands over (the utility, the declared attributes): each configuration runs
`rank_slate` (or `compose_utility` for the utility forms) `--repeat` times, interleaved, and reports p50 / p99 per
call next to the plain path (`apply_slate`, the weighted sum) it replaces. The issue's bar: <= 0.2 ms per step.

    python bench/ranking_bench.py [--candidates 1000] [--top-k 50] [--repeat 2000] [--record]

`--record` appends the table to bench/RESULTS.md with the machine, the date, the load average and the versions.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np

from app.artifacts import PolicyFile
from app.artifacts.loading import load_manifest
from app.artifacts.policy import SlateRules
from app.artifacts.policy_ranking import RankingRules
from app.serving.attributes import AttributeColumns
from app.serving.policy import CompiledPolicy
from app.serving.ranking import rank_slate
from app.serving.slate import apply_slate
from app.serving.utility import compose_utility
from bench.common import BUNDLE, append_results, load_average, machine, now, percentiles

CAPS = SlateRules.model_validate({
    "max_per_value": [{"name": "creator_cap", "attribute": "creator", "max": 3}],
    "max_matching": [{"name": "sponsored_cap", "attribute": "sponsored", "equals": True, "max": 5}],
})

CONFIGS: dict[str, dict[str, object]] = {
    "diversity decay (1 rule)": {"diversity": [{"name": "d", "attribute": "creator", "decay": 0.3, "floor": 0.1}]},
    "MMR categorical": {"mmr": {"name": "m", "attribute": "category", "lambda": 0.7}},
    "MMR vector d=32, scores spread": {"mmr": {"name": "m", "attribute": "emb", "lambda": 0.7}},
    "MMR vector d=32, scores tight (no pruning)": {"mmr": {"name": "m", "attribute": "emb", "lambda": 0.7}},
    "minimum + max share": {
        "minimums": [{"name": "fresh", "attribute": "fresh", "equals": True, "min": 10, "within": 20}],
        "max_share": [{"name": "share", "attribute": "sponsored", "equals": True, "share": 0.1}],
    },
    "fatigue (100 creators with feedback)": {"history": {"fatigue": {"attribute": "creator", "decay": 0.5}}},
    "decay + minimum (demo v2 slate)": {
        "diversity": [{"name": "d", "attribute": "creator", "decay": 0.4, "floor": 0.2}],
        "minimums": [{"name": "fresh", "attribute": "fresh", "equals": True, "min": 3, "within": 10}],
    },
}


def _inputs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, AttributeColumns]:
    rng = np.random.default_rng(seed)
    utility = rng.normal(0.0, 1.0, n)
    attributes: AttributeColumns = {
        "creator": [f"c{v}" for v in rng.integers(0, 300, n)],
        "category": [f"k{v}" for v in rng.integers(0, 20, n)],
        "sponsored": (rng.random(n) < 0.1).tolist(),
        "fresh": (rng.random(n) < 0.05).tolist(),
        "emb": rng.normal(size=(n, 32)),
        "margin": rng.gamma(2.0, 2.0, n),
    }
    probabilities = rng.uniform(0.0, 1.0, (n, 4)) * np.array([0.3, 0.05, 0.02, 0.001])
    return utility, probabilities, attributes


def _time(call: Callable[[], object], repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
    return percentiles(samples)


def _compiled(ranking: dict[str, object] | None) -> CompiledPolicy:
    data: dict[str, object] = {
        "schema_version": 1, "surface": "home", "name": "bench", "version": "1",
        "model": {"name": "demo_ranker", "version": "1"}, "calibration_version": "1",
        "attributes": {"margin": "number"},
        "utility": [
            {"name": "click", "task": "click", "weight": 1.0},
            {"name": "gmv", "task": "purchase", "weight": 0.05, "attribute": "margin"},
            {"name": "hide", "task": "hide", "weight": -0.5},
            {"name": "report", "task": "report", "weight": -0.2},
        ],
        "governance": {"owner": "bench", "approved_by": ["bench"], "created_at": "2026-01-01T00:00:00Z",
                       "change_note": "bench"},
    }
    if ranking is not None:
        data["ranking"] = ranking
    return CompiledPolicy(PolicyFile.model_validate(data), load_manifest(BUNDLE))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--top-k", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=2000)
    parser.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    args = parser.parse_args()
    n, k, repeat = args.candidates, args.top_k, args.repeat
    utility, probabilities, attributes = _inputs(n, seed=1)
    kept = np.arange(n)
    feedback = {f"c{c}": 1 + c % 4 for c in range(100)}
    rows: list[tuple[str, float, float]] = []
    base = _time(lambda: apply_slate(kept, utility, attributes, CAPS, k), repeat)
    rows.append(("plain slate: sort + 2 caps + top_k (`apply_slate`)", *base))
    for label, block in CONFIGS.items():
        rules = RankingRules.model_validate(block)
        scores = utility * 0.01 if "tight" in label else utility
        rows.append((label, *_time(lambda r=rules, s=scores: rank_slate(kept, s, attributes, r, CAPS, k, feedback),
                                   repeat)))
    for label, ranking in (("utility: weighted sum (`compose_utility`)", None),
                           ("utility: product form", {"form": "product", "epsilon": 0.01}),
                           ("utility: sum, 2 terms rank-normalised", {"normalize": {"click": "rank", "gmv": "rank"}}),
                           ("utility: sum, 2 terms z-scored", {"normalize": {"click": "zscore", "gmv": "zscore"}})):
        policy = _compiled(ranking)
        weights = policy.resolve({}).weights
        rows.append((label, *_time(lambda p=policy, w=weights: compose_utility(probabilities, attributes, p, w),
                                   repeat)))
    lines = [f"{n} candidates, top_k {k}, {repeat} calls each; the slate rows run `rank_slate` with the same 2 caps"
             f" as the plain slate, so their added cost is the step's; load average {load_average()}", "",
             "| step | p50 ms | p99 ms | added p50 ms |", "|---|---:|---:|---:|"]
    reference = 0.0
    for label, p50, p99 in rows:
        if label.startswith(("plain", "utility: weighted")):
            reference = p50
        added = "–" if label.startswith(("plain", "utility: weighted")) else f"{p50 - reference:.3f}"
        lines.append(f"| {label} | {p50:.3f} | {p99:.3f} | {added} |")
    print("\n".join(lines))
    if args.record:
        loaded = os.getloadavg()[0] > 1.5  # 2 cores: any other job inflates the figures
        note = ["**Recorded on a loaded machine: provisional figures.**", ""] if loaded else []
        append_results("bench/ranking_bench.py", [
            f"machine: {machine()}, numpy {np.__version__}  ", f"date: {now()}; {lines[0]}", "", *note, *lines[2:]])


if __name__ == "__main__":
    main()
