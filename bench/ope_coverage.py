"""Off-policy estimators against known truth: interval coverage over 20 seeds and error vs log size.

The yardstick is `app.offline.ope.environment.BanditEnvironment`: a logging policy exploring with the
service's softmax sampler, a re-weighted deterministic target, position-biased clicks; the true value of
the target is computed exactly from the hidden click probabilities on 200,000 fresh requests. Each seed
logs requests, and the target is evaluated through the path of `fusionrank simulate --ope`. The figures
go to bench/RESULTS.md.

    python bench/ope_coverage.py [--seeds 20] [--requests 8000] [--sizes 1000,4000,16000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from app.offline.ope.environment import BanditEnvironment, evaluate_seed
from bench.common import append_results, load_average, machine, now

ESTIMATORS = ("ips", "snips", "dr")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--requests", type=int, default=8000)
    parser.add_argument("--sizes", default="1000,4000,16000")
    parser.add_argument("--error-seeds", type=int, default=10)
    args = parser.parse_args()
    env = BanditEnvironment()
    truth = env.true_value(env.target_weights, "click")
    logging_greedy = env.true_value(env.logging_weights, "click")
    started = time.perf_counter()
    covered = dict.fromkeys(ESTIMATORS, 0)
    rows = []
    for seed in range(args.seeds):
        m = evaluate_seed(env, args.requests, seed)
        for name in ESTIMATORS:
            e = m["estimates"][name]
            covered[name] += e["lower"] <= truth <= e["upper"]
        dr = m["estimates"]["dr"]
        rows.append(f"| {seed} | {m['logged']:.4f} | {m['estimates']['ips']['value']:.4f} |"
                    f" {m['estimates']['snips']['value']:.4f} | {dr['value']:.4f} |"
                    f" [{dr['lower']:.4f}, {dr['upper']:.4f}] |"
                    f" {'yes' if dr['lower'] <= truth <= dr['upper'] else 'no'} | {m['ess'][-1]:.0f} |")
        print(rows[-1], flush=True)
    errors: dict[int, dict[str, float]] = {}
    for size in [int(s) for s in args.sizes.split(",")]:
        diffs: dict[str, list[float]] = {name: [] for name in ESTIMATORS}
        for seed in range(args.error_seeds):
            m = evaluate_seed(env, size, 1000 + seed, n_bootstrap=10)
            for name in ESTIMATORS:
                diffs[name].append(m["estimates"][name]["value"] - truth)
        errors[size] = {name: float(np.sqrt(np.mean(np.square(d)))) for name, d in diffs.items()}
        print(size, errors[size], flush=True)
    minutes = (time.perf_counter() - started) / 60
    lines = [
        f"- {now()}, {machine()}; load average {load_average()}; {minutes:.1f} min",
        f"- environment: {env.n_candidates} candidates per request, value = expected clicks in the top {env.k}"
        f" (position bias 1/(1+l)^{env.position_decay}); logging policy p_click + 2 p_purchase with softmax"
        f" exploration (temperature {env.temperature}, protect_top {env.protect_top}); target p_click + 0.2"
        f" p_purchase, deterministic",
        f"- true value of the target **{truth:.4f}** (the logging policy's greedy ranking: {logging_greedy:.4f})",
        f"- 95 % interval covers the truth, {args.seeds} seeds x {args.requests} requests: **DR {covered['dr']}**,"
        f" SNIPS {covered['snips']}, IPS {covered['ips']} (percentile Poisson bootstrap, 500 replicates)",
        "",
        "| seed | logged (on-policy) | IPS | SNIPS | DR | DR 95 % interval | covers | ESS at k |",
        "|---:|---:|---:|---:|---:|---|---|---:|",
        *rows,
        "",
        f"Root-mean-square error against the truth over {args.error_seeds} seeds, by log size (requests):",
        "",
        "| requests | IPS | SNIPS | DR |",
        "|---:|---:|---:|---:|",
        *[f"| {size} | {e['ips']:.4f} | {e['snips']:.4f} | {e['dr']:.4f} |" for size, e in errors.items()],
    ]
    append_results("bench/ope_coverage.py", lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
