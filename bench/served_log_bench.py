"""Cost of the served log on `/v1/score`: c=8 throughput at 1000 candidates, log off vs on (100 % sampling).

Three `fusionrank serve` processes on 127.0.0.1 (the shipped demo bundle): log off; log on without
features; log on with features (FUSIONRANK_SERVED_LOG=home:1.0). Each is driven at concurrency 8
with a 1000-candidate row JSON body (8 closed-loop httpx client threads), in interleaved rounds (off, on,
features, off, ...) so that load from other jobs falls on all three alike; the median round is reported,
with the writer's drops (a dropped
request was not logged: its cost was not paid) and the server's CPU per request. Also the RSS after the
run (the queue bounds what the log may hold). Appends a table to bench/RESULTS.md.
Usage: python bench/served_log_bench.py [--seconds S] [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import append_results, free_port, load_average, machine, now, request_with, served
from bench.live import closed_loop_throughput

CONFIGS = {
    "off": {},
    "on": {"FUSIONRANK_SERVED_LOG": "home:1.0"},
    "on + features": {"FUSIONRANK_SERVED_LOG": "home:1.0", "FUSIONRANK_SERVED_LOG_FEATURES": "true"},
}


def _metric(url: str, name: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as answer:
        lines = answer.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds per round and configuration")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--candidates", type=int, default=1000)
    args = parser.parse_args()
    body = orjson.dumps(request_with(args.candidates))
    throughput: dict[str, list[float]] = {name: [] for name in CONFIGS}
    cpu: dict[str, list[float]] = {name: [] for name in CONFIGS}
    dropped: dict[str, float] = dict.fromkeys(CONFIGS, 0.0)
    rows: dict[str, float] = dict.fromkeys(CONFIGS, 0.0)
    rss: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="fusionrank-served-log-") as tmp:
        for _ in range(args.rounds):
            for name, env in CONFIGS.items():
                env = {**env, "FUSIONRANK_SERVED_LOG_PATH": str(Path(tmp) / name.replace(" + ", "_"))} if env else {}
                with served(free_port(), env) as server:
                    closed_loop_throughput(server.url, body, clients=8, seconds=2.0)  # warm-up
                    before = server.cpu_seconds()
                    rate = closed_loop_throughput(server.url, body, clients=8, seconds=args.seconds)
                    throughput[name].append(rate)
                    cpu[name].append((server.cpu_seconds() - before) / (rate * args.seconds) * 1000)
                    dropped[name] += _metric(server.url, "fusionrank_log_dropped_requests_total")
                    rows[name] += _metric(server.url, 'fusionrank_log_rows_total{kind="served"}')
                    rss[name] = server.rss_mb()
    base = statistics.median(throughput["off"])
    lines = [
        f"{now()}, {machine()}, load average {load_average()}; demo bundle, {args.candidates} candidates, row JSON,"
        f" 8 closed-loop clients (httpx threads), {args.seconds:.0f} s x {args.rounds} interleaved rounds per"
        " configuration (median round).",
        "",
        "| served log | req/s (median) | rounds | cost vs off | server CPU ms/req | rows logged | requests dropped"
        " | RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in CONFIGS:
        median = statistics.median(throughput[name])
        rounds = ", ".join(f"{v:.1f}" for v in throughput[name])
        cost = "—" if name == "off" else f"{(1 - median / base) * 100:+.1f} %"
        lines.append(f"| {name} | {median:.1f} | {rounds} | {cost} | {statistics.median(cpu[name]):.2f} |"
                     f" {rows[name]:.0f} | {dropped[name]:.0f} | {rss[name]:.0f} |")
    print("\n".join(lines))
    append_results("served log overhead (bench/served_log_bench.py)", lines)


if __name__ == "__main__":
    main()
