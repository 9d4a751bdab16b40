"""Cost saved by a two-stage cascade: the heavy model on every candidate vs a light first stage + top_n.

Heavy: the issue's reference shape (48 numeric + 4 categorical features, 256-128 trunk, 5 heads;
bench/reference_bundle.py) with the demo policy home/1. Light: `demo_light/1`, 8 of the numeric
features + the 4 categorical ones, one hidden layer of 16, distilled from the heavy model's logits
(bench/light_bundle.py). Policies `c100` / `c200` are home/1 with `cascade: {model: demo_light/1,
top_n: 100 | 200}` (first-stage score: the policy's utility on the light predictions).

(a) in process: `score_request` on a decoded request of N candidates, interleaved, p50/p99 and CPU;
(b) over HTTP (unless --no-http): `fusionrank serve` on 127.0.0.1, sequential POSTs of the JSON body
    pinned to each policy version (`policy_version`), p50/p99 wall.
The last column of (a) is the share of the golden candidates in the heavy model's answer (top_k 20) that
the cascade's answer holds too (the request is ~25 jittered copies of each of the golden batch's 40
candidates, so only indicative; and the reference model's weights are random, spread over all 48
features, which a light model reading 8 cannot follow): quality lost is measured on a log by
`fusionrank simulate --cascade-store` (docs/policies.md, Two-stage cascade).

    PYTHONPATH=. python bench/cascade_bench.py --record            # appends to bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson
import yaml

from app.control.loader import load_snapshot
from app.protocol.score import decode_score
from app.serving.bundle import PolicyBinding
from app.serving.cascade import score_request
from app.serving.scorer import ScoreInput
from bench.common import (
    append_results,
    free_port,
    load_average,
    machine,
    now,
    percentiles,
    request_with,
    segmented_store,
    served,
)
from bench.light_bundle import build_light_bundle
from bench.reference_bundle import NUMERIC

TOP_N = (100, 200)
LIGHT_NUMERIC, LIGHT_HIDDEN = 8, (16,)  # the light bundle: the first 8 of the 48 numeric features, 16 hidden


def build_store(folder: Path) -> tuple[Path, Path]:
    """The reference store with the light bundle and the cascade policies c100 and c200 beside home/1."""
    store, policies = segmented_store(folder, "reference")
    build_light_bundle(store / "demo_ranker" / "1", store / "demo_light" / "1", numeric=NUMERIC[:LIGHT_NUMERIC],
                       hidden=LIGHT_HIDDEN)
    base = yaml.safe_load((policies / "home" / "1.yaml").read_text())
    for top_n in TOP_N:
        cascade = {"model": {"name": "demo_light", "version": "1"}, "calibration_version": "1", "top_n": top_n}
        policy = {**base, "version": f"c{top_n}", "cascade": cascade}
        (policies / "home" / f"c{top_n}.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    return store, policies


def in_process(store: tuple[Path, Path], n: int, repeats: int) -> dict[str, tuple[float, float, float, float]]:
    """version -> (p50 ms, p99 ms, CPU ms per request, overlap of its answer with the heavy model's) of
    `score_request` on one decoded request."""
    snapshot = load_snapshot(*store)
    if snapshot.problems:
        raise SystemExit(f"the bench store does not load: {snapshot.problems}")
    route = snapshot.route("home")
    _, call = decode_score(orjson.dumps(request_with(n)), "application/json", max_candidates=100_000,
                           max_decoded_bytes=1 << 30)
    cases: dict[str, tuple[PolicyBinding, ScoreInput]] = {
        "1 (heavy on all)": (route.binding("1"), call.candidates),
        **{f"c{t} (light on all, heavy on {t})": (route.binding(f"c{t}"), call.candidates) for t in TOP_N},
    }
    for binding, request in cases.values():
        for _ in range(5):  # warm-up
            score_request(binding, request)
    wall: dict[str, list[float]] = {name: [] for name in cases}
    cpu = dict.fromkeys(cases, 0.0)
    gc.collect()
    gc.freeze()
    for _ in range(repeats):
        for name, (binding, request) in cases.items():
            c0, t0 = time.process_time(), time.perf_counter()
            score_request(binding, request)
            wall[name].append(time.perf_counter() - t0)
            cpu[name] += time.process_time() - c0
    gc.unfreeze()
    # The request holds ~25 jittered copies of each golden candidate (id `<golden id>-<i>`): compare which
    # golden candidates each answer holds, not which copy.
    answers = {name: {str(r.ids[i]).rsplit("-", 1)[0] for i in score_request(b, r).ranked.tolist()}
               for name, (b, r) in cases.items()}
    heavy = answers["1 (heavy on all)"]
    overlap = {name: len(answer & heavy) / max(len(heavy), 1) for name, answer in answers.items()}
    return {name: (*percentiles(wall[name]), cpu[name] / repeats * 1e3, overlap[name]) for name in cases}


def over_http(store: tuple[Path, Path], n: int, requests: int) -> dict[str, tuple[float, float]]:
    """version -> (p50 ms, p99 ms) of sequential POSTs pinned to it, interleaved."""
    versions = ["1", *(f"c{t}" for t in TOP_N)]
    bodies = {v: orjson.dumps({**request_with(n), "policy_version": v}) for v in versions}
    wall: dict[str, list[float]] = {v: [] for v in versions}
    with served(free_port(), store=store) as server:
        for i in range(requests + 10):
            for version, body in bodies.items():
                request = urllib.request.Request(f"{server.url}/v1/score", data=body,
                                                 headers={"content-type": "application/json"})
                t0 = time.perf_counter()
                with urllib.request.urlopen(request, timeout=30) as answer:
                    answer.read()
                if i >= 10:  # the first rounds warm the server
                    wall[version].append(time.perf_counter() - t0)
    return {v: percentiles(w) for v, w in wall.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=200, help="in-process rounds")
    parser.add_argument("--requests", type=int, default=100, help="HTTP rounds")
    parser.add_argument("--no-http", action="store_true", help="skip (b)")
    parser.add_argument("--record", action="store_true", help="append the tables to bench/RESULTS.md")
    args = parser.parse_args()
    store = build_store(Path(tempfile.mkdtemp(prefix="fusionrank-cascade-bench-")))
    n = args.candidates
    results = in_process(store, n, args.repeats)
    load_in_process = load_average()
    heavy = results["1 (heavy on all)"][0]
    lines = [
        f"machine: {machine()}  ",
        f"date: {now()}; heavy = reference shape demo_ranker/1 (48 + 4 features, 256-128 trunk, 5 heads), light ="
        " demo_light/1 (8 + 4 features, 16 hidden, distilled), policy home/1 and its cascades c100 / c200 (first"
        " stage scored by the policy's utility); ORT 1 intra-op thread",
        "",
        f"(a) in process, `score_request` on one decoded request of {n} candidates, {args.repeats} interleaved rounds"
        f" (load average {load_in_process}):",
        "",
        "| policy | p50 ms | p99 ms | CPU ms / request | p50 / heavy on all | answer overlap with heavy on all |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, (p50, p99, cpu, overlap) in results.items():
        lines.append(f"| {name} | {p50:.3f} | {p99:.3f} | {cpu:.3f} | {p50 / heavy:.2f} | {overlap:.2f} |")
    if not args.no_http:
        http = over_http(store, n, args.requests)
        lines += ["", f"(b) over HTTP, JSON body of {n} candidates pinned to each policy, sequential, {args.requests}"
                  f" interleaved rounds (load average {load_average()}):", "",
                  "| policy | p50 ms | p99 ms | p50 / heavy on all |", "|---|---:|---:|---:|"]
        for version, (p50, p99) in http.items():
            lines.append(f"| {version} | {p50:.2f} | {p99:.2f} | {p50 / http['1'][0]:.2f} |")
    print("\n".join(lines), flush=True)
    if args.record:
        append_results("bench/cascade_bench.py", lines)


if __name__ == "__main__":
    main()
