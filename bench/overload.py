"""Overload: 2x the saturation throughput against a real uvicorn, then back to half of it.

Measures the saturation throughput (closed loop), then offers twice that open loop for `--seconds`:
the excess must be shed with 503 + Retry-After at once, the p99 of the accepted requests must stay
bounded (about max_in_flight x service time, not the length of a growing queue), and when the load
drops to half the saturation the service must recover by itself: no 503, p99 back near the idle one.

    .venv/bin/python -m bench.overload                 # appends to bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import os
from collections import Counter

import orjson

from bench.common import append_results, free_port, machine, now, sample_request
from bench.live import OpenLoop, closed_loop_throughput, live_server, p50_p99_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--max-in-flight", type=int, default=16)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    body = orjson.dumps(sample_request())
    load_before = os.getloadavg()
    env = {"FUSIONRANK_MAX_IN_FLIGHT": str(args.max_in_flight), "FUSIONRANK_POLICY_WATCH_INTERVAL": "0"}
    with live_server(free_port(), env) as live:
        closed_loop_throughput(live.url, body, clients=4, seconds=3)
        saturation = closed_loop_throughput(live.url, body, clients=8, seconds=8)
        phases = []
        for name, factor, seconds in (
            ("idle (0.3x)", 0.3, args.seconds / 2), ("overload (2x)", 2.0, args.seconds),
            ("recovered (0.5x)", 0.5, args.seconds / 2),
        ):
            loop = OpenLoop(live.url, body, workers=args.workers, timeout_s=30)
            loop.run(factor * saturation, seconds)
            codes = Counter(s[2] for s in loop.samples)
            accepted = [s[1] for s in loop.samples if s[2] == 200]
            shed = [s[1] for s in loop.samples if s[2] == 503]
            p50, p99 = p50_p99_ms(accepted)
            shed_p99 = p50_p99_ms(shed)[1]
            phases.append((name, factor * saturation, len(loop.samples), dict(codes), p50, p99, shed_p99))
            print(phases[-1], flush=True)
    load_after = os.getloadavg()
    lines = [
        f"- {now()}, {machine()}; shared machine, load average {load_before[0]:.2f} before /"
        f" {load_after[0]:.2f} after (1 min)",
        f"- saturation {saturation:.0f} req/s (8 closed-loop clients, 40-candidate sample request, client and"
        f" server on the same 2 cores); FUSIONRANK_MAX_IN_FLIGHT={args.max_in_flight}; open loop from"
        f" {args.workers} client threads",
        "",
        "| phase | offered req/s | sent | answers | accepted p50 ms | accepted p99 ms | 503 p99 ms |",
        "|---|---:|---:|---|---:|---:|---:|",
        *[f"| {n} | {r:.0f} | {s} | {c} | {p50:.1f} | {p99:.1f} | {sp:.1f} |" for n, r, s, c, p50, p99, sp in phases],
    ]
    print("\n".join(lines))
    if not args.no_record:
        append_results("bench/overload.py", lines)


if __name__ == "__main__":
    main()
