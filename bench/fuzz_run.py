"""Schema-driven fuzzing of a real uvicorn on 127.0.0.1: 10,000+ generated requests over every route.

The same generator and checks as tests/reliability/test_fuzz_schema.py (tests/reliability/fuzzing.py),
more examples per operation, through httpx over TCP. Admin operations with and without the token.

    .venv/bin/python -m bench.fuzz_run --examples 1500   # appends to bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import os
import time

import httpx

from bench.common import append_results, free_port, machine, now
from bench.live import ADMIN, live_server
from tests.reliability.fuzzing import MAX_SECONDS, fuzz


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=1500, help="examples per operation")
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    load_before = os.getloadavg()
    t0 = time.monotonic()
    env = {"FUSIONRANK_MAX_CANDIDATES": "500", "FUSIONRANK_POLICY_WATCH_INTERVAL": "0"}
    with live_server(free_port(), env) as live, httpx.Client(base_url=live.url, timeout=MAX_SECONDS * 2) as client:

        def send(
            method: str, url: str, headers: dict[str, str], body: bytes | None
        ) -> tuple[int, dict[str, str], bytes]:
            try:
                r = client.request(method, url, headers=headers, content=body)
            except httpx.TimeoutException:
                return 599, {}, b"timeout"
            return r.status_code, dict(r.headers), r.content

        schema = client.get("/openapi.json").json()
        report = fuzz(schema, send, examples_per_operation=args.examples, seed=args.seed, admin_headers=ADMIN)
        alive = client.get("/readyz").status_code
    elapsed = time.monotonic() - t0
    statuses = ", ".join(f"{int(k)}: {v}" for k, v in sorted(report.statuses.items()))
    operations = ", ".join(f"{k} {v}" for k, v in sorted(report.by_operation.items()))
    lines = [
        f"- {now()}, {machine()}; shared machine, load average {load_before[0]:.2f} before /"
        f" {os.getloadavg()[0]:.2f} after (1 min)",
        f"- **{report.requests} generated requests**, seed {args.seed}, up to {args.examples} examples per"
        f" operation (schemathesis positive + negative strategies), {elapsed:.0f} s; /readyz afterwards: {alive}",
        f"- statuses: {statuses}",
        f"- per operation: {operations}",
        f"- **failures (5xx, undocumented status, not the error shape, slower than {MAX_SECONDS:g} s):"
        f" {len(report.failures)}**; slowest answer {report.slowest_seconds * 1000:.0f} ms",
        *[f"  - {f[:300]}" for f in report.failures[:10]],
    ]
    print("\n".join(lines))
    if not args.no_record:
        append_results("bench/fuzz_run.py", lines)
    if report.failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
