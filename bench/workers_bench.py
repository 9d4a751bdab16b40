"""Requests/s of one replica with 1 vs 2 uvicorn workers (`fusionrank serve --workers N`), on this machine.

The sample request (row JSON, 40 candidates), 16 closed-loop keep-alive connections (concurrency 16) from
bench/http_load.py, ROUND_SECONDS per round, rounds alternating 1 and 2 workers so that the load of the
shared machine hits both alike; the median round of each is reported. With 2 workers the service runs in
prometheus_client's multiprocess mode (app/monitoring/multiproc.py), so the figure includes its cost.

The load generator runs in this process, on the same cores as the service: each round also measures its CPU
time and the service's (the `serve` process and its workers, from /proc), and reports the load generator's
share of the CPU the round used, and of the machine's cores. A share near half means the client, not the
service, set the pace.

    PYTHONPATH=$PWD python -m bench.workers_bench            # print the figures
    PYTHONPATH=$PWD python -m bench.workers_bench --record   # and append them to bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import ROOT, append_results, free_port, load_average, machine, now, served
from bench.http_load import closed_loop

__all__ = ["main"]

CONNECTIONS = 16
ROUND_SECONDS = 8.0
ROUNDS = 3  # per worker count
_TICK = os.sysconf("SC_CLK_TCK")


def _tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of process `root` and its live descendants (the `serve` parent and its
    uvicorn workers), from /proc."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process exited meanwhile
            continue
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / _TICK
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(cpu.get(pid, 0.0) for pid in tree)


@dataclass(frozen=True)
class Round:
    """One measured round: requests/s, and the CPU seconds of the load generator and of the service."""

    rate: float
    wall: float
    client_cpu: float
    server_cpu: float

    @property
    def client_share(self) -> float:
        """The load generator's share of the CPU time the round used (client + service)."""
        return self.client_cpu / max(self.client_cpu + self.server_cpu, 1e-9)

    @property
    def client_cores(self) -> float:
        """The load generator's CPU time over the machine's core-seconds in the round."""
        return self.client_cpu / (self.wall * (os.cpu_count() or 1))


def measure(workers: int, body: bytes) -> Round:
    port = free_port()
    with served(port, workers=workers) as service:
        closed_loop("127.0.0.1", port, "/v1/score", body, clients=CONNECTIONS, seconds=1.0)  # warm
        server0, client0, wall0 = _tree_cpu_seconds(service.pid), time.process_time(), time.monotonic()
        rate = closed_loop("127.0.0.1", port, "/v1/score", body, clients=CONNECTIONS, seconds=ROUND_SECONDS)
        wall, client = time.monotonic() - wall0, time.process_time() - client0
        server = _tree_cpu_seconds(service.pid) - server0
    return Round(rate, wall, client, server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--record", action="store_true", help="append the figures to bench/RESULTS.md")
    args = parser.parse_args()
    body = (ROOT / "model_store" / "demo_ranker" / "1" / "sample_request.json").read_bytes()
    before = load_average()
    busy = os.getloadavg()[0] > (os.cpu_count() or 1)
    rounds: dict[int, list[Round]] = {1: [], 2: []}
    for _ in range(ROUNDS):
        for workers in (1, 2):
            done = measure(workers, body)
            rounds[workers].append(done)
            print(f"workers={workers}: {done.rate:.0f} req/s; load generator {done.client_share:.0%} of the round's"
                  f" CPU ({done.client_cores:.0%} of the cores)", flush=True)
    median = {w: statistics.median(r.rate for r in rounds[w]) for w in (1, 2)}

    def row(workers: int) -> str:
        rs = rounds[workers]
        share = statistics.median(r.client_share for r in rs)
        cores = statistics.median(r.client_cores for r in rs)
        return (f"| {workers} | {median[workers]:.0f} | {', '.join(f'{r.rate:.0f}' for r in rs)} | {share:.0%} |"
                f" {cores:.0%} |")

    lines = [
        f"- {now()}, {machine()}; load average {before} before / {load_average()} after",
        f"- sample request (row JSON, 40 candidates), concurrency {CONNECTIONS} (closed-loop keep-alive connections,"
        f" bench/http_load.py, the load generator on the same cores), {ROUNDS} alternating rounds of"
        f" {ROUND_SECONDS:.0f} s, median round; 2 workers run prometheus_client's multiprocess mode",
        "",
        "| workers | req/s (median) | rounds req/s | load generator's share of the CPU used | load generator's"
        " share of the cores |",
        "|---:|---:|---|---:|---:|",
        row(1),
        row(2),
        "",
        f"2 workers / 1 worker: **{median[2] / median[1]:.2f}x**"
        + (" (the 1-minute load average exceeded the core count: other work shared the cores, read the"
           " rounds' spread before the ratio)" if busy else ""),
    ]
    print("\n".join(lines))
    if args.record:
        append_results("bench/workers_bench.py", lines)


if __name__ == "__main__":
    main()
