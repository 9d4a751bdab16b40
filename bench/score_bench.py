"""Scoring latency on the demo bundle, three ways, for 100 and 1000 candidates:

(a) floor: orjson decode of the body + onnxruntime run on ready matrices + orjson encode of the answer;
(b) pipeline: the service's own code in process (decode, validate, features, model, calibration,
    utility, guardrails, slate, encode), without HTTP;
(c) HTTP: `fusionrank serve` (one uvicorn worker) on 127.0.0.1, driven by `hey`: p50/p99 at
    concurrency 1 and 8, and throughput at concurrency 8.
Prints a markdown table and appends it, with machine and date, to bench/RESULTS.md.
Usage: python bench/score_bench.py [--requests N] [--no-http]
"""

from __future__ import annotations

import argparse
import csv
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.api.decode import decode_score_request
from app.api.encode import score_response
from app.serving.loader import load_snapshot
from app.serving.scorer import score
from bench.common import (
    ROOT,
    append_results,
    free_port,
    machine,
    now,
    percentiles,
    request_with,
    require,
    served,
)


def in_process(n: int, repeats: int) -> tuple[tuple[float, float], tuple[float, float]]:
    snapshot = load_snapshot(ROOT / "model_store", ROOT / "policies")
    binding = snapshot.route("home").binding(None)
    body = orjson.dumps(request_with(n))
    envelope, scored = decode_score_request(body, max_candidates=100_000)
    encoded = binding.bundle.encoder.encode(scored.features, scored.context_features)
    answer = score_response(envelope, scored, score(binding, scored))
    floor, pipeline = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        orjson.loads(body)
        binding.bundle.runner.run(encoded.numeric, encoded.categorical)
        orjson.dumps(answer)
        t1 = time.perf_counter()
        envelope, scored = decode_score_request(body, max_candidates=100_000)
        orjson.dumps(score_response(envelope, scored, score(binding, scored)))
        t2 = time.perf_counter()
        floor.append(t1 - t0)
        pipeline.append(t2 - t1)
    return percentiles(floor), percentiles(pipeline)


def over_http(url: str, n: int, requests: int, concurrency: int) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, candidates/s) from hey's per-request CSV."""
    hey = require("hey", "hey")
    with tempfile.NamedTemporaryFile(suffix=".json") as body:
        body.write(orjson.dumps(request_with(n)))
        body.flush()
        # warm-up, then the measured run; both bounded in count and in time
        for count in (max(concurrency * 5, 20), requests):
            started = time.perf_counter()
            out = subprocess.run(
                [hey, "-n", str(count), "-c", str(concurrency), "-m", "POST", "-T", "application/json",
                 "-D", body.name, "-t", "20", "-o", "csv", f"{url}/v1/score"],
                capture_output=True, text=True, check=True, timeout=300,
            ).stdout
            elapsed = time.perf_counter() - started
    rows = list(csv.DictReader(io.StringIO(out)))
    ok = [float(r["response-time"]) for r in rows if r["status-code"] == "200"]
    if len(ok) != len(rows):
        raise SystemExit(f"{len(rows) - len(ok)} of {len(rows)} requests failed")
    p50, p99 = percentiles(ok)
    return p50, p99, len(ok) * n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400, help="requests per HTTP measurement")
    parser.add_argument("--repeats", type=int, default=300, help="in-process repetitions")
    parser.add_argument("--no-http", action="store_true", help="skip (c)")
    args = parser.parse_args()
    lines = [
        f"machine: {machine()}  ",
        f"date: {now()}; demo bundle demo_ranker/1 with policy home/1 (Platt per task, 4 utility terms,"
        " 2 guardrails, 2 slate rules, top_k 20); one uvicorn worker, ORT 1 intra-op thread",
        "",
        "| candidates | (a) floor p50 / p99 ms | (b) pipeline p50 / p99 ms | (b)/(a) p50 "
        "| (c) HTTP c=1 p50 / p99 ms | (c) HTTP c=8 p50 / p99 ms | (c) c=8 candidates/s |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    port = free_port()
    results = {n: in_process(n, args.repeats) for n in (100, 1000)}
    http: dict[int, tuple[tuple[float, float, float], tuple[float, float, float]]] = {}
    if not args.no_http:
        with served(port) as url:
            for n in (100, 1000):
                http[n] = (over_http(url, n, args.requests, 1), over_http(url, n, args.requests, 8))
    for n, (floor, pipeline) in results.items():
        row = f"| {n} | {floor[0]:.2f} / {floor[1]:.2f} | {pipeline[0]:.2f} / {pipeline[1]:.2f} | " \
              f"{pipeline[0] / floor[0]:.2f} |"
        if n in http:
            (p50_1, p99_1, _), (p50_8, p99_8, rate) = http[n]
            row += f" {p50_1:.2f} / {p99_1:.2f} | {p50_8:.2f} / {p99_8:.2f} | {rate:,.0f} |"
        else:
            row += " - | - | - |"
        lines.append(row)
    print("\n".join(lines))
    append_results("bench/score_bench.py", lines)


if __name__ == "__main__":
    main()
