"""Requests/s of one replica with 1 vs 2 uvicorn workers (`fusionrank serve --workers N`), on this machine.

The sample request (row JSON, 40 candidates), 16 closed-loop keep-alive connections from
bench/http_load.py, ROUND_SECONDS per round, rounds alternating 1 and 2 workers so that the load of the
shared machine hits both alike; the median round of each is reported. With 2 workers the service runs in
prometheus_client's multiprocess mode (app/monitoring/multiproc.py), so the figure includes its cost.
Appends its section to bench/RESULTS.md.

    PYTHONPATH=$PWD python -m bench.workers_bench
"""

from __future__ import annotations

import os
import statistics

from bench.common import ROOT, append_results, free_port, load_average, machine, now, served
from bench.http_load import closed_loop

__all__ = ["main"]

CONNECTIONS = 16
ROUND_SECONDS = 8.0
ROUNDS = 3  # per worker count


def main() -> None:
    body = (ROOT / "model_store" / "demo_ranker" / "1" / "sample_request.json").read_bytes()
    before = load_average()
    busy = os.getloadavg()[0] > (os.cpu_count() or 1)
    rates: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(ROUNDS):
        for workers in (1, 2):
            port = free_port()
            with served(port, workers=workers):
                closed_loop("127.0.0.1", port, "/v1/score", body, clients=CONNECTIONS, seconds=1.0)  # warm
                rate = closed_loop("127.0.0.1", port, "/v1/score", body, clients=CONNECTIONS, seconds=ROUND_SECONDS)
            rates[workers].append(rate)
            print(f"workers={workers}: {rate:.0f} req/s", flush=True)
    one, two = (statistics.median(rates[w]) for w in (1, 2))
    append_results("bench/workers_bench.py", [
        f"- {now()}, {machine()}; shared machine, load average {before} before / {load_average()} after",
        f"- sample request (row JSON, 40 candidates), {CONNECTIONS} closed-loop keep-alive connections "
        f"(bench/http_load.py, client on the same cores), {ROUNDS} alternating rounds of {ROUND_SECONDS:.0f} s, "
        "median round; 2 workers run prometheus_client's multiprocess mode",
        "",
        "| workers | req/s (median) | rounds req/s |",
        "|---:|---:|---|",
        f"| 1 | {one:.0f} | {', '.join(f'{r:.0f}' for r in rates[1])} |",
        f"| 2 | {two:.0f} | {', '.join(f'{r:.0f}' for r in rates[2])} |",
        "",
        f"2 workers / 1 worker: **{two / one:.2f}x**"
        + (" (the 1-minute load average exceeded the core count: other work shared the cores, read the"
           " rounds' spread before the ratio)" if busy else ""),
    ])


if __name__ == "__main__":
    main()
