"""Overload: 2x the saturation throughput against a real uvicorn, then back to half of it.

Measures the saturation throughput mu (closed loop, 8 connections), then offers a fixed rate open loop:
0.3x (idle), 2x (overload), 0.5x (recovered). The promise: at 2x the excess is shed with 503 +
Retry-After at once; the p99 of the *accepted* requests stays bounded; when the load drops the service
recovers by itself, with no 503 and the accepted p99 back near the idle one.

The expected bound: at most `max_in_flight` requests are admitted; one of them scores on the event loop
(the default; with `--scoring N`, N of them on worker threads) and the rest wait in line, served at the
rate the process manages, so an admitted request is answered after about max_in_flight / mu. Under
overload the process also spends CPU refusing the excess, so its accepted rate mu' is below mu and the
line moves at mu': at 2x the line is always full, and the accepted p50 should sit at max_in_flight / mu'.
The p99 adds what the machine's scheduler adds; bounded means it does not grow while the overload lasts
(first vs second half of the phase).

The client is `bench/http_load.py` (one uvloop loop, prepared request bytes, answers parsed as they
arrive), not Python threads: those spend about as much CPU per request as the server, and on 2 shared
cores they took the CPU the server needed (see bench/RESULTS.md, the first runs). Once the server has
started (it inherits the bench's priority) the client lowers its own by `--client-nice`, so that under
contention the server is scheduled first; the client's own delays show up as `lag`. On a machine with
sched_autogroup, `nice` only counts within a session: give the bench a session and an autogroup
priority of its own (`bench.live.session_priority`):

    setsid -w nice -n -15 .venv/bin/python -m bench.overload --session-nice -15   # appends to bench/RESULTS.md

`--compare-scoring loop,2` instead measures, in interleaved rounds, the 2x phase under each way of
scoring: `loop` (FUSIONRANK_SCORE_IN_THREAD=false, the default) or N worker threads
(FUSIONRANK_SCORE_IN_THREAD=true, FUSIONRANK_SCORE_THREADS=N; 40 is anyio's default thread pool).
"""

from __future__ import annotations

import argparse
import os
from collections import Counter

import numpy as np
import orjson

from bench.common import append_results, free_port, machine, now, sample_request
from bench.http_load import OpenLoopReport, closed_loop, open_loop
from bench.live import live_server, p50_p99_ms, session_priority

PHASES = (("idle (0.3x)", 0.3, 0.5), ("overload (2x)", 2.0, 1.0), ("recovered (0.5x)", 0.5, 0.5))  # share of --seconds
BODY = orjson.dumps(sample_request())


def _server_env(args: argparse.Namespace, scoring: str) -> dict[str, str]:
    """scoring: "loop" (on the event loop, one request at a time) or a number of scoring threads."""
    env = {"FUSIONRANK_MAX_IN_FLIGHT": str(args.max_in_flight), "FUSIONRANK_POLICY_WATCH_INTERVAL": "0",
           "FUSIONRANK_SCORE_IN_THREAD": str(scoring != "loop").lower()}
    if scoring != "loop":
        env["FUSIONRANK_SCORE_THREADS"] = str(int(scoring))
    return env


def _scoring_label(scoring: str) -> str:
    return "event loop" if scoring == "loop" else f"{scoring} threads"


def _saturation(port: int) -> float:
    closed_loop("127.0.0.1", port, "/v1/score", BODY, clients=4, seconds=3)  # warm the path
    return closed_loop("127.0.0.1", port, "/v1/score", BODY, clients=8, seconds=8)


def _halves_p99(report: OpenLoopReport) -> tuple[float, float]:
    """Accepted p99 of the first and the second half of a phase (by send time)."""
    half = report.seconds / 2
    first = [s for due, s, code in report.samples if code == 200 and due < half]
    second = [s for due, s, code in report.samples if code == 200 and due >= half]
    return p50_p99_ms(first)[1], p50_p99_ms(second)[1]


def run_phases(args: argparse.Namespace, priority: str) -> list[str]:
    load_before = os.getloadavg()
    port = free_port()
    with live_server(port, _server_env(args, args.scoring)) as live:
        server_nice = os.getpriority(os.PRIO_PROCESS, live.pid)
        client_nice = os.nice(args.client_nice)
        saturation = _saturation(port)
        phases, reports = [], []
        for name, factor, share in PHASES:
            cpu0 = live.cpu_seconds()
            report = open_loop("127.0.0.1", port, "/v1/score", BODY, rate=factor * saturation,
                               seconds=share * args.seconds, connections=args.connections)
            cpu = (live.cpu_seconds() - cpu0) / (share * args.seconds)
            p50, p99 = p50_p99_ms(report.latencies(200))
            shed_p50, shed_p99 = p50_p99_ms(report.latencies(503))
            lag_p99 = float(np.percentile(report.lags, 99)) * 1000 if report.lags else float("nan")
            accepted_rate = len(report.latencies(200)) / report.seconds
            phases.append((name, report.rate, accepted_rate, report.statuses(), p50, p99, shed_p50, shed_p99, lag_p99,
                           cpu))
            reports.append(report)
            print(phases[-1], flush=True)
    load_after = os.getloadavg()
    idle_p99, over_p50, over_p99, recovered_p99 = phases[0][5], phases[1][4], phases[1][5], phases[2][5]
    accepted_under_overload = phases[1][2]
    bound_ms = 1000 * args.max_in_flight / saturation
    bound_overload_ms = 1000 * args.max_in_flight / accepted_under_overload
    first_p99, second_p99 = _halves_p99(reports[1])
    recovered_503 = phases[2][3].get(503, 0)
    when = Counter(int(due) for due, _, code in reports[2].samples if code == 503)
    recovered_when = f" (by second of the phase: {dict(sorted(when.items()))})" if when else ""
    return [
        f"- {now()}, {machine()}; shared machine, load average {load_before[0]:.2f} before /"
        f" {load_after[0]:.2f} after (1 min)",
        f"- saturation mu = {saturation:.0f} req/s (8 closed-loop connections, 40-candidate sample request, client"
        f" and server on the same 2 cores); FUSIONRANK_MAX_IN_FLIGHT={args.max_in_flight},"
        f" scoring on {_scoring_label(args.scoring)}; open loop from `bench/http_load.py` (evenly spaced"
        f" sends, up to {args.connections} keep-alive connections); scheduling: {priority}; niceness server"
        f" {server_nice}, client {client_nice}",
        f"- expected at 2x: max_in_flight / mu = {args.max_in_flight} / {saturation:.0f} = **{bound_ms:.1f} ms**;"
        f" at the accepted rate under overload mu' = {accepted_under_overload:.0f} req/s,"
        f" {args.max_in_flight} / mu' = **{bound_overload_ms:.1f} ms**. Measured accepted p50"
        f" **{over_p50:.1f} ms**, p99 **{over_p99:.1f} ms**; p99 of the first / second half of the phase"
        f" {first_p99:.1f} / {second_p99:.1f} ms",
        f"- recovery: 503s at 0.5x: **{recovered_503}**{recovered_when}; accepted p99 {recovered_p99:.1f} ms at 0.5x vs"
        f" {idle_p99:.1f} ms at 0.3x",
        "",
        "| phase | offered req/s | accepted req/s | answers | accepted p50 ms | accepted p99 ms | 503 p50 / p99 ms |"
        " client lag p99 ms | server CPU (cores) |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|",
        *[f"| {n} | {r:.0f} | {a:.0f} | {c} | {p50:.1f} | {p99:.1f} | {sp50:.1f} / {sp99:.1f} | {lag:.1f} | {cpu:.2f} |"
          for n, r, a, c, p50, p99, sp50, sp99, lag, cpu in phases],
    ]


def compare_scoring(args: argparse.Namespace, priority: str, values: list[str]) -> list[str]:
    """Interleaved rounds: per value, a fresh server, its saturation, then 2x of a fixed rate for --seconds."""
    load_before = os.getloadavg()
    rows: dict[str, list[tuple[float, ...]]] = {v: [] for v in values}
    rate = 0.0
    for _ in range(args.rounds):
        for value in values:
            port = free_port()
            with live_server(port, _server_env(args, value)):
                os.nice(args.client_nice)  # after the server started: it keeps the bench's priority
                try:
                    saturation = _saturation(port)
                    rate = rate or 2 * saturation  # the first server's 2x, then the same offered load for all
                    report = open_loop("127.0.0.1", port, "/v1/score", BODY, rate=rate, seconds=args.seconds,
                                       connections=args.connections)
                finally:
                    os.nice(-args.client_nice)  # back for the next server (raising a priority needs root)
            accepted = p50_p99_ms(report.latencies(200))
            shed = p50_p99_ms(report.latencies(503))
            rows[value].append((saturation, len(report.latencies(200)) / args.seconds, *accepted, *shed))
            print(value, rows[value][-1], flush=True)
    header = ("| scoring | mu req/s (c=8) | accepted req/s at 2x | accepted p50 ms | accepted p99 ms |"
              " 503 p50 ms | 503 p99 ms |")
    lines = [
        f"- {now()}, {machine()}; shared machine, load average {load_before[0]:.2f} before /"
        f" {os.getloadavg()[0]:.2f} after (1 min); scheduling: {priority}",
        f"- scoring on {', '.join(map(_scoring_label, values))}; {args.rounds} interleaved rounds; per round and"
        f" value a fresh server, its saturation (8 closed-loop connections), then {rate:.0f} req/s open loop for"
        f" {args.seconds:g} s"
        f" (2x the first server's saturation); FUSIONRANK_MAX_IN_FLIGHT={args.max_in_flight}. Medians over the rounds:",
        "",
        header,
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for value, measured in rows.items():
        m = np.median(np.asarray(measured), axis=0)
        lines.append(f"| {_scoring_label(value)} | {m[0]:.0f} | {m[1]:.0f} | {m[2]:.1f} | {m[3]:.1f} | {m[4]:.1f} |"
                     f" {m[5]:.1f} |")
    lines += ["", "Every round:", "", header.replace("| scoring |", "| scoring (round) |"),
              "|---:|---:|---:|---:|---:|---:|---:|"]
    for round_ in range(args.rounds):
        for value in values:
            r = rows[value][round_]
            lines.append(f"| {_scoring_label(value)} ({round_ + 1}) | {r[0]:.0f} | {r[1]:.0f} | {r[2]:.1f} |"
                         f" {r[3]:.1f} | {r[4]:.1f} | {r[5]:.1f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the overload phase")
    parser.add_argument("--max-in-flight", type=int, default=16)
    parser.add_argument("--scoring", default="loop", help="`loop` (the default) or a number of scoring threads")
    parser.add_argument("--connections", type=int, default=256, help="open-loop connection cap")
    parser.add_argument("--client-nice", type=int, default=5, help="added to the client's niceness after the"
                        " server started (the server keeps the niceness the bench was started with)")
    parser.add_argument("--session-nice", type=int, help="niceness of the bench's own autogroup (needs setsid)")
    parser.add_argument("--compare-scoring", help="comma-separated ways of scoring: `loop` or a number of threads")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of --compare-scoring")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    priority = session_priority(args.session_nice)
    if args.compare_scoring:
        values = [v.strip() for v in args.compare_scoring.split(",")]
        lines, title = compare_scoring(args, priority, values), "bench/overload.py (scoring compared)"
    else:
        lines, title = run_phases(args, priority), "bench/overload.py"
    print("\n".join(lines))
    if not args.no_record:
        append_results(title, lines)


if __name__ == "__main__":
    main()
