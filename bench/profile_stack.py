"""What the web stack around `/v1/score` costs: the whole ASGI app in process, with and without the work.

Drives `app.main.create_app` directly as an ASGI callable (lifespan started, no socket, no load
generator) with a 1000-candidate body, alternating the real route with one whose `_answer` (decode,
score, encode, metrics) is replaced by a constant: the difference is the work, the rest is the stack
(uvicorn excluded): middleware, routing, dependencies, body reading, the response. With `--profile
FILE`, the stack-only requests are also run under cProfile and the top of the profile is printed
(`python -m pstats FILE` opens it). This is how the worker-thread hop of FastAPI's plain-`def`
dependencies was found (bench/profiles/README.md).
Usage: python bench/profile_stack.py [--model demo|reference] [--format rows|columns|arrow] [--requests N]
       [--profile FILE] [--no-record]   (appends its table to bench/RESULTS.md)
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import app.api.score as score_module
from app.main import create_app
from app.settings import Settings
from bench.common import MODELS, append_results, load_average, machine, now, segmented_store
from bench.score_bench import FORMATS, body_of


def _scope(body: bytes, content_type: str) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/v1/score", "raw_path": b"/v1/score", "query_string": b"", "root_path": "",
        "headers": [(b"host", b"bench"), (b"content-type", content_type.encode()),
                    (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2),
    }


async def _measure(args: argparse.Namespace) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="fusionrank-stack-") as folder:
        real = score_module._answer
        try:
            return await _measure_in(args, Path(folder))
        finally:
            score_module._answer = real  # the real route again, whatever happened


async def _measure_in(args: argparse.Namespace, folder: Path) -> list[str]:
    store = segmented_store(folder, args.model)
    app = create_app(Settings(model_store=store[0], policies=store[1], policy_watch_interval=0))
    body, content_type = body_of(args.format, 1000)
    scope = _scope(body, content_type)
    real = score_module._answer

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def one() -> None:
        status: list[int] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(dict(scope), receive, send)
        if status != [200]:
            raise SystemExit(f"/v1/score answered {status}")

    async def timed(answer: Any) -> float:
        score_module._answer = answer
        for _ in range(20):
            await one()
        start = time.perf_counter()
        for _ in range(args.requests):
            await one()
        return (time.perf_counter() - start) / args.requests * 1e6

    def constant(*_: Any, **__: Any) -> bytes:
        return b"{}"

    async with app.router.lifespan_context(app):
        rounds = [(await timed(real), await timed(constant)) for _ in range(3)]  # alternating
        if args.profile:
            score_module._answer = constant
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(args.requests):
                await one()
            profiler.disable()
            profiler.dump_stats(args.profile)
            pstats.Stats(args.profile).sort_stats("cumulative").print_stats(25)
    whole = sorted(r[0] for r in rounds)[1]
    stack = sorted(r[1] for r in rounds)[1]
    return [
        f"machine: {machine()}; date: {now()}; load average {load_average()}  ",
        f"{MODELS[args.model]}; {args.format} body, 1000 candidates; {args.requests} requests per round, "
        "3 alternating rounds, medians; the ASGI app called in process (no uvicorn, no socket)",
        "",
        "| whole request µs | stack alone (work replaced by a constant) µs | stack share |",
        "|---:|---:|---:|",
        f"| {whole:.0f} | {stack:.0f} | {stack / whole:.1%} |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), default="demo")
    parser.add_argument("--format", choices=FORMATS, default="columns")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--profile", help="write a cProfile of the stack-only requests to this file")
    parser.add_argument("--no-record", action="store_true", help="do not append the table to bench/RESULTS.md")
    args = parser.parse_args()
    lines = uvloop.run(_measure(args))
    print("\n".join(lines))
    if not args.no_record:
        append_results("bench/profile_stack.py", lines)


if __name__ == "__main__":
    main()
