"""Cost of the served-mix accounting (app/monitoring/mix.py) on the hot path, in process.

One request of N candidates (default 1000; 200 creators, 10 % sponsored) is scored once on the demo
policy with `slate.top_k` raised to K (default 50) and a mix property added (3 matching measures, 1
per-value rule, 4 utility terms); then, interleaved in one loop, the script times:
  score()          the whole scoring call (features to slate) that produced the outcome, for scale;
  mix_counts()     the per-request accounting alone (numpy over the K answered rows);
  ServedMix.observe()  accounting + the counter increments, as `AnswerMetrics.answered` runs it;
in this process (one worker) and, in a child process, with PROMETHEUS_MULTIPROC_DIR set (the counters
write memory-mapped files, as with `fusionrank serve --workers N`).
Usage: python bench/mix_bench.py [--candidates N] [--top-k K] [--repeats R] [--record]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, append_results, load_average, machine, now, request_with


def _store(work: Path, top_k: int) -> tuple[Path, Path]:
    """The demo store with policy 1 at slate.top_k = top_k and a `fresh` mix property (policy copies only)."""
    policies = work / "policies"
    shutil.copytree(ROOT / "policies", policies)
    path = policies / "home" / "1.yaml"
    data = yaml.safe_load(path.read_text())
    data["slate"]["top_k"] = top_k
    data["attributes"]["is_new"] = "boolean"
    data["monitoring"] = {"mix_properties": [{"name": "fresh", "attribute": "is_new", "equals": True}],
                          "mix_bands": [{"rule": "sponsored_cap", "max": 0.15},
                                        {"rule": "creator_diversity", "min": 0.5}]}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return ROOT / "model_store", policies


def _body(n: int) -> bytes:
    request = request_with(n)
    rng = np.random.default_rng(7)
    for i, candidate in enumerate(request["candidates"]):
        candidate["attributes"].update(creator_id=f"creator{i % 200:03d}", sponsored=bool(rng.random() < 0.1),
                                       is_new=bool(rng.random() < 0.3), eligible=True)
    return json.dumps(request).encode()


def measure(n: int, top_k: int, repeats: int) -> dict[str, list[float]]:
    """name -> [median, minimum] µs per request, the cases interleaved (the minimum is the least disturbed by a
    loaded machine)."""
    from prometheus_client import CollectorRegistry

    from app.control.loader import load_snapshot
    from app.monitoring.mix import ServedMix, mix_counts
    from app.protocol.rows import decode_score_request
    from app.serving.scorer import score

    with tempfile.TemporaryDirectory() as work:
        snapshot = load_snapshot(*_store(Path(work), top_k))
    assert not snapshot.problems, snapshot.problems
    binding = snapshot.route("home").binding(None)
    _, scored = decode_score_request(_body(n), max_candidates=n)
    outcome = score(binding, scored)
    mix = ServedMix(CollectorRegistry())
    mix.observe_snapshot(snapshot)
    measures = mix.series("home", "stable", binding.policy.file).measures
    cases: dict[str, Callable[[], Any]] = {
        "score()": lambda: score(binding, scored),
        "mix_counts()": lambda: mix_counts(measures, outcome.ranked, outcome.attributes, outcome.contributions),
        "ServedMix.observe()": lambda: mix.observe("home", "stable", outcome),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    clock = time.perf_counter
    for _ in range(repeats):
        for name, case in cases.items():
            started = clock()
            case()
            samples[name].append(clock() - started)
    answered = len(outcome.ranked)
    assert answered == top_k, f"{answered} answered, wanted {top_k}: the request must fill the slate"
    return {name: [float(np.median(values)) * 1e6, float(np.min(values)) * 1e6] for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--top-k", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # the multiprocess-mode run: print the figures for the parent
        print(json.dumps(measure(args.candidates, args.top_k, args.repeats)))
        return
    single = measure(args.candidates, args.top_k, args.repeats)
    with tempfile.TemporaryDirectory() as files:
        command = [sys.executable, __file__, "--child", "--candidates", str(args.candidates), "--top-k",
                   str(args.top_k), "--repeats", str(args.repeats)]
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": files}
        multi = json.loads(subprocess.run(command, env=env, capture_output=True, text=True, check=True,
                                          timeout=600).stdout)
    lines = [
        f"{now()}; {machine()}; load average {load_average()}.",
        f"One request of {args.candidates} candidates, top_k {args.top_k} answered, demo policy (4 terms, 2 slate"
        f" rules) + 1 mix property; median (minimum) of {args.repeats} interleaved runs, µs per request.", "",
        "| case | one process | multiprocess mode |", "|---|---:|---:|",
    ]
    for name in single:
        lines.append(f"| {name} | {single[name][0]:.1f} ({single[name][1]:.1f}) |"
                     f" {multi[name][0]:.1f} ({multi[name][1]:.1f}) |")
    observe, scored = single["ServedMix.observe()"][0], single["score()"][0]
    lines += ["", f"The accounting adds {observe:.1f} µs per request at the median ({100 * observe / scored:.1f} % of"
              f" score()) in one process, {multi['ServedMix.observe()'][0]:.1f} µs in multiprocess mode."]
    print("\n".join(lines))
    if args.record:
        append_results("Served-mix accounting cost (bench/mix_bench.py)", lines)


if __name__ == "__main__":
    main()
