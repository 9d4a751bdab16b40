"""Soak: a real uvicorn at ~70 % of measured saturation for N minutes, policy swaps every 30 s.

Records per minute: requests, errors (anything but 200, transport errors included), p50/p99 of the
latency, RSS and open file descriptors of the server; plus every swap's outcome. Passes when there
are zero errors and RSS grew less than 5 % between the end of the warm-up minute and the end.

    setsid -w nice -n -15 .venv/bin/python -m bench.soak --minutes 10 --session-nice -15   # appends to bench/RESULTS.md

(`--session-nice`: an autogroup priority of its own, see `bench.live.session_priority`; with sched_autogroup a
plain `nice` does not order processes of different sessions.)
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import httpx
import orjson

from bench.common import append_results, free_port, machine, now, sample_request
from bench.live import ADMIN, OpenLoop, closed_loop_throughput, live_server, p50_p99_ms, session_priority


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--load", type=float, default=0.7, help="share of the measured saturation")
    parser.add_argument("--swap-every", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--session-nice", type=int, help="niceness of the bench's own autogroup (needs setsid)")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    priority = session_priority(args.session_nice)
    body = orjson.dumps(sample_request())
    load_before = os.getloadavg()
    with live_server(free_port()) as live:
        closed_loop_throughput(live.url, body, clients=4, seconds=3)  # warm the path
        saturation = closed_loop_throughput(live.url, body, clients=8, seconds=10)
        rate = args.load * saturation
        print(f"saturation {saturation:.0f} req/s; soaking at {rate:.0f} req/s for {args.minutes} min", flush=True)
        seconds = args.minutes * 60
        loop = OpenLoop(live.url, body, workers=args.workers)
        resources: list[tuple[float, float, int]] = []
        swaps: list[tuple[float, str, int]] = []
        stop = threading.Event()
        start = time.monotonic()

        def watch() -> None:
            version = "1"
            next_swap = start + args.swap_every
            with httpx.Client(timeout=30) as admin:
                while not stop.wait(1.0):
                    resources.append((time.monotonic() - start, live.rss_mb(), live.open_fds()))
                    if time.monotonic() >= next_swap:
                        r = admin.post(f"{live.url}/admin/policies/home/activate", json={"version": version},
                                       headers=ADMIN)
                        swaps.append((time.monotonic() - start, version, r.status_code))
                        version = "2" if version == "1" else "1"
                        next_swap += args.swap_every

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        loop.run(rate, seconds)
        stop.set()
        watcher.join(40)
        metrics_text = httpx.get(f"{live.url}/metrics", timeout=10).text
    load_after = os.getloadavg()
    minutes = int(-(-seconds // 60))
    rows = []
    for m in range(minutes):
        window = [s for s in loop.samples if m * 60 <= s[0] - start < (m + 1) * 60]
        ok = [s[1] for s in window if s[2] == 200]
        errors = len(window) - len(ok)
        res = [r for r in resources if m * 60 <= r[0] < (m + 1) * 60]
        rss = res[-1][1] if res else float("nan")
        fds = res[-1][2] if res else -1
        p50, p99 = p50_p99_ms(ok)
        rows.append((m + 1, len(window), errors, p50, p99, rss, fds))
    warm_rss = rows[0][5]
    end_rss = rows[-1][5]
    growth = 100 * (end_rss - warm_rss) / warm_rss
    total_errors = sum(r[2] for r in rows)
    failed_swaps = [s for s in swaps if s[2] != 200]
    shed = sum(float(line.split()[-1]) for line in metrics_text.splitlines()
               if line.startswith("fusionrank_requests_shed_total"))
    lines = [
        f"- {now()}, {machine()}; shared machine (other engineers' jobs running), load average "
        f"{load_before[0]:.2f} before / {load_after[0]:.2f} after (1 min); scheduling: {priority}",
        f"- {args.minutes:g} min at {args.load:.0%} of the measured saturation ({saturation:.0f} req/s with 8"
        f" closed-loop clients on the same machine) = {rate:.0f} req/s of the 40-candidate sample request,"
        f" {args.workers} client threads; policy 1 <-> 2 activated through the admin API every"
        f" {args.swap_every:g} s ({len(swaps)} swaps, {len(failed_swaps)} failed)",
        f"- **errors {total_errors}** of {sum(r[1] for r in rows)} requests; shed (503) {shed:.0f};"
        f" **RSS growth after the warm-up minute {growth:+.1f} %** ({warm_rss:.1f} -> {end_rss:.1f} MB)",
        "",
        "| minute | requests | errors | p50 ms | p99 ms | RSS MB | open fds |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        *[f"| {m} | {n} | {e} | {p50:.1f} | {p99:.1f} | {rss:.1f} | {fds} |" for m, n, e, p50, p99, rss, fds in rows],
    ]
    print("\n".join(lines))
    if not args.no_record:
        append_results(f"bench/soak.py ({args.minutes:g} min)", lines)
    if total_errors or failed_swaps or growth >= 5:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
