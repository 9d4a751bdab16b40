"""Cost of the served log on `/v1/score`: c=8 throughput at 1000 candidates, log off vs 100 % sampling without
features vs 100 % with features (the target: a cost of at most 5 % and 15 %).

Three `fusionrank serve` configurations on 127.0.0.1 (the shipped demo bundle): log off; log on without
features; log on with features (FUSIONRANK_SERVED_LOG=home:1.0). Each is driven at concurrency 8 with a
1000-candidate row JSON body (8 closed-loop httpx client threads), in interleaved rounds (off, on,
features, off, ...; a fresh server per round, 2 s warm-up) so that load from other jobs falls on all three
alike. A round's cost is 1 - its throughput / the same round's `off` throughput; the table gives the median
round's cost and the spread of the rounds. Also per configuration: the server's CPU per request while
measured, and over the server's whole life including its child compactor (the Parquet encoding of the hot
files, at nice 19, partly after the measured window: at shutdown), the rows logged and the requests
dropped (a dropped request was not logged, so its cost was not paid: a run with drops understates the
cost), the Parquet files closed and the RSS after the run (the queue bounds what the log holds).
`--record` appends the table to bench/RESULTS.md.

    python bench/served_log_bench.py --seconds 15 --rounds 5 --record
"""

from __future__ import annotations

import argparse
import resource
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
TARGET = {"on": 5.0, "on + features": 15.0}  # the target: the most the log may cost, %


def _metric(url: str, name: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as answer:
        lines = answer.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(name))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds per round and configuration")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    args = parser.parse_args()
    body = orjson.dumps(request_with(args.candidates))
    throughput: dict[str, list[float]] = {name: [] for name in CONFIGS}
    cpu: dict[str, list[float]] = {name: [] for name in CONFIGS}
    dropped: dict[str, float] = dict.fromkeys(CONFIGS, 0.0)
    rows: dict[str, float] = dict.fromkeys(CONFIGS, 0.0)
    answered: dict[str, float] = dict.fromkeys(CONFIGS, 0.0)
    files: dict[str, float] = dict.fromkeys(CONFIGS, 0.0)
    rss: dict[str, float] = {}
    lifetime: dict[str, list[float]] = {name: [] for name in CONFIGS}
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="fusionrank-served-log-") as tmp:
        for _ in range(args.rounds):
            for name, env in CONFIGS.items():
                env = {**env, "FUSIONRANK_SERVED_LOG_PATH": str(Path(tmp) / name.replace(" + ", "_"))} if env else {}
                spent = _children_cpu()
                with served(free_port(), env) as server:
                    requests = closed_loop_throughput(server.url, body, clients=8, seconds=2.0) * 2.0  # warm-up
                    before = server.cpu_seconds()
                    dropped_before = _metric(server.url, "fusionrank_log_dropped_requests_total")
                    rows_before = _metric(server.url, 'fusionrank_log_rows_total{kind="served"}')
                    rate = closed_loop_throughput(server.url, body, clients=8, seconds=args.seconds)
                    throughput[name].append(rate)
                    cpu[name].append((server.cpu_seconds() - before) / (rate * args.seconds) * 1000)
                    rss[name] = server.rss_mb()
                    dropped[name] += _metric(server.url, "fusionrank_log_dropped_requests_total") - dropped_before
                    # Rows the writer wrote while measured (what it still held at the end is written at shutdown).
                    rows[name] += _metric(server.url, 'fusionrank_log_rows_total{kind="served"}') - rows_before
                    answered[name] += rate * args.seconds
                    requests += rate * args.seconds
                # The server and its compactor, reaped: their whole lives' CPU (start-up, shutdown conversion).
                lifetime[name].append((_children_cpu() - spent) / requests * 1000)
                files[name] = float(len(list((Path(tmp) / name.replace(" + ", "_")).rglob("*.parquet"))))
    off = throughput["off"]
    lines = [
        f"{now()}, {machine()}, load average {load_before} before / {load_average()} after; demo bundle,"
        f" {args.candidates} candidates, row JSON, 8 closed-loop clients (httpx threads, same cores),"
        f" {args.seconds:.0f} s x {args.rounds} interleaved rounds per configuration, a fresh server per round.",
        "",
        "| served log | req/s (median) | rounds req/s | cost vs off: median round [min, max] | bound |"
        " server CPU ms/req while measured | CPU ms/req over the server's life, compaction included |"
        " rows written while measured / requests x candidates | requests dropped | Parquet files | RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in CONFIGS:
        median = statistics.median(throughput[name])
        rounds = ", ".join(f"{v:.1f}" for v in throughput[name])
        if name == "off":
            cost, bound = "—", "—"
        else:
            costs = [(1 - on / base) * 100 for on, base in zip(throughput[name], off, strict=True)]
            cost = f"{statistics.median(costs):+.1f} % [{min(costs):+.1f}, {max(costs):+.1f}]"
            bound = f"≤ {TARGET[name]:.0f} %"
        written = f"{rows[name] / (answered[name] * args.candidates):.2f}" if name != "off" else "—"
        lines.append(f"| {name} | {median:.1f} | {rounds} | {cost} | {bound} | {statistics.median(cpu[name]):.2f} |"
                     f" {statistics.median(lifetime[name]):.2f} | {written} | {dropped[name]:.0f} | {files[name]:.0f} |"
                     f" {rss[name]:.0f} |")
    print("\n".join(lines))
    if args.record:
        append_results("served log overhead (bench/served_log_bench.py)", lines)


if __name__ == "__main__":
    main()
