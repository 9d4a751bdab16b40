"""fusionrank side by side with what a team would build instead, in one run, on the same machine.

Servers, all on 127.0.0.1, one worker each, on the same artifacts (the demo bundle with segment
calibration added, policy home/1):
- fusionrank, row JSON, column JSON and Arrow bodies;
- BentoML 1.4 with onnxruntime (1 intra-op thread) and pydantic IO (bench/peer_apps/bento_service.py);
- FastAPI + a pydantic model per candidate + torch eager (bench/peer_apps/torch_app.py), the torch
  module rebuilt from the ONNX weights;
- a careful hand-written FastAPI app: raw body, orjson, numpy, onnxruntime (bench/peer_apps/handwritten_app.py;
  no validation, no metrics), run by this Python.
First every server ranks the same 1000-candidate request and their top-10 ids must equal
fusionrank's; then `hey` drives each at concurrency 1 and 8 in alternating rounds, so that load
spikes from other jobs on a shared machine hit every server alike. The in-process floor and the
raw ort.run time of the same run are recorded too, and the issue's targets are checked against the
same rounds: at c=8, Arrow >= 10x BentoML's requests/s, row JSON >= 3x BentoML's and >= 1.1x the
hand-written app's. BentoML and torch run from their own venv (the `bench` extra: `python -m venv
.venv-bench && .venv-bench/bin/pip install -e ".[bench]"`).
Usage: python bench/peers.py [--requests N] [--rounds N] [--peer-python PATH] [--model demo|reference]
       [--record]   (--record appends the table to bench/RESULTS.md)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.protocol.arrow import ARROW_MEDIA_TYPE
from bench.common import (
    MODELS,
    ROOT,
    Served,
    append_results,
    free_port,
    hey,
    load_average,
    machine,
    now,
    percentiles,
    segmented_store,
    served,
)
from bench.live import session_priority
from bench.score_bench import body_of, in_process

JSON = "application/json"
BENTO = "BentoML 1.4 (ORT)"
HANDWRITTEN = "FastAPI hand-written (raw body, orjson, numpy, ORT)"


def peer_versions(python: str) -> str:
    code = ("import bentoml, torch, fastapi, pydantic, onnxruntime; print(f'BentoML {bentoml.__version__}, "
            "torch {torch.__version__}, FastAPI {fastapi.__version__}, pydantic {pydantic.__version__}, "
            "onnxruntime {onnxruntime.__version__}')")
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def fusionrank_versions() -> str:
    import fastapi
    import pyarrow
    import pydantic
    import uvicorn

    return f"fusionrank: FastAPI {fastapi.__version__}, uvicorn {uvicorn.__version__}, " \
           f"pydantic {pydantic.__version__}, pyarrow {pyarrow.__version__}"


def post(url: str, body: bytes, content_type: str) -> list[str]:
    """Answered ids in order."""
    request = urllib.request.Request(url, data=body, headers={"content-type": content_type}, method="POST")
    with urllib.request.urlopen(request, timeout=60) as answer:
        data = json.loads(answer.read())
    return [c["id"] for c in data["candidates"]]


@contextlib.contextmanager
def servers(store: tuple[Path, Path], python: str) -> Iterator[dict[str, tuple[Served, str]]]:
    """name -> (server, scoring path), all started, stopped at the end."""
    env = {"PEER_MODEL_STORE": str(store[0]), "PEER_POLICIES": str(store[1]), "PYTHONPATH": str(ROOT),
           "BENTOML_HOME": tempfile.mkdtemp(prefix="bentoml-home-"), "OMP_NUM_THREADS": "1",
           "BENTOML_DO_NOT_TRACK": "true"}
    with contextlib.ExitStack() as stack:
        started: dict[str, tuple[Served, str]] = {}
        started["fusionrank"] = (stack.enter_context(served(free_port(), store=store)), "/v1/score")
        port = free_port()
        started[BENTO] = (stack.enter_context(served(
            port, env, timeout_s=180, ready_path="/readyz",
            command=[python, "-m", "bentoml", "serve", "bench.peer_apps.bento_service:Ranker", "--port", str(port),
                     "--host", "127.0.0.1"],
        )), "/score")
        port = free_port()
        started["FastAPI + pydantic + torch eager"] = (stack.enter_context(served(
            port, env, timeout_s=180, ready_path="/docs",
            command=[python, "-m", "uvicorn", "bench.peer_apps.torch_app:app", "--port", str(port),
                     "--host", "127.0.0.1", "--log-level", "warning", "--no-access-log"],
        )), "/v1/score")
        port = free_port()
        started[HANDWRITTEN] = (stack.enter_context(served(
            port, env, timeout_s=60, ready_path="/docs",
            command=[sys.executable, "-m", "uvicorn", "bench.peer_apps.handwritten_app:app", "--port", str(port),
                     "--host", "127.0.0.1", "--log-level", "warning", "--no-access-log"],
        )), "/v1/score")
        yield started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=120, help="requests per server and concurrency per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--peer-python", default=str(ROOT / ".venv-bench" / "bin" / "python"))
    parser.add_argument("--model", choices=sorted(MODELS), default="demo", help="the bundle every server serves")
    parser.add_argument("--session-nice", type=int, help="niceness of the bench's own autogroup (needs setsid)")
    parser.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    args = parser.parse_args()
    priority = session_priority(args.session_nice)
    store = segmented_store(Path(tempfile.mkdtemp(prefix="fusionrank-peers-")), args.model)
    rows = body_of("rows", 1000)[0]
    columns = body_of("columns", 1000)[0]
    arrow = body_of("arrow", 1000)[0]
    # (label, server, body, content type, accept)
    with servers(store, args.peer_python) as started:
        fr = started["fusionrank"][0].url + "/v1/score"
        expected = post(fr, rows, JSON)[:10]
        agreement = []
        for name, (server, path) in started.items():
            top = post(server.url + path, rows, JSON)[:10]
            agreement.append(f"{name}: top-10 {'equal to' if top == expected else 'DIFFERS from'} fusionrank's")
            if top != expected:
                raise SystemExit(f"{name} ranks differently: {top} vs {expected}")
        cases = [
            ("fusionrank, row JSON", fr, rows, JSON, None),
            ("fusionrank, column JSON", fr, columns, JSON, None),
            ("fusionrank, Arrow in and out", fr, arrow, ARROW_MEDIA_TYPE, ARROW_MEDIA_TYPE),
        ] + [
            (name, server.url + path, rows, JSON, None) for name, (server, path) in started.items()
            if name != "fusionrank"
        ]
        samples: dict[tuple[str, int], list[float]] = {}
        spent: dict[tuple[str, int], float] = {}
        loads = []
        for _ in range(args.rounds):
            for concurrency in (1, 8):
                for label, url, body, kind, accept in cases:
                    hey(url, body, kind, count=max(16, 3 * concurrency), concurrency=concurrency, accept=accept)
                    ok, elapsed = hey(url, body, kind, count=args.requests, concurrency=concurrency, accept=accept)
                    samples.setdefault((label, concurrency), []).extend(ok)
                    spent[(label, concurrency)] = spent.get((label, concurrency), 0.0) + elapsed
                loads.append(load_average())
    floor = in_process(store, 1000, 100)
    table = [
        f"machine: {machine()}  ",
        f"date: {now()}; {fusionrank_versions()}; peers: {peer_versions(args.peer_python)}  ",
        f"1000 candidates per request ({MODELS[args.model]}; Platt + segment calibration; "
        "policy home/1: 4 utility terms, 2 guardrails, 2 slate rules, top_k 20); "
        f"one worker each; scheduling: {priority}; `hey`, {args.rounds} alternating rounds of {args.requests} "
        "requests per server and "
        "concurrency  ",
        f"load average after each round: {'; '.join(loads)}  ",
        "The ratios compare servers measured in the same alternating rounds (on a shared machine absolute "
        "times are inflated).  ",
        "; ".join(agreement) + "  ",
        "in process, after the servers stopped (other load; the same-run floor ratio is score_bench.py's): "
        f"floor (a) p50 {floor['(a) floor'][0]:.2f} ms, ort.run (o) p50 "
        f"{floor['(o) ort.run'][0]:.2f} ms, fusionrank pipeline (b) rows p50 {floor['(b) rows'][0]:.2f} ms",
        "",
        "| server | c=1 p50 / p99 ms | c=8 p50 / p99 ms | c=8 requests/s | c=8 vs BentoML | c=8 vs hand-written |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    rates = {label: len(samples[(label, 8)]) / spent[(label, 8)] for label, *_ in cases}
    bento, handwritten = rates[BENTO], rates[HANDWRITTEN]
    for label, *_ in cases:
        p50_1, p99_1 = percentiles(samples[(label, 1)])
        p50_8, p99_8 = percentiles(samples[(label, 8)])
        table.append(f"| {label} | {p50_1:.2f} / {p99_1:.2f} | {p50_8:.2f} / {p99_8:.2f} | {rates[label]:.1f} | "
                     f"{rates[label] / bento:.2f}x | {rates[label] / handwritten:.2f}x |")
    arrow_x, rows_x = rates["fusionrank, Arrow in and out"] / bento, rates["fusionrank, row JSON"] / bento
    rows_h = rates["fusionrank, row JSON"] / handwritten
    table += ["", "Targets (issue #26, c=8, the same rounds): "
              f"Arrow >= 10x BentoML: {arrow_x:.2f}x ({_verdict(arrow_x, 10)}); "
              f"row JSON >= 3x BentoML: {rows_x:.2f}x ({_verdict(rows_x, 3)}); "
              f"row JSON >= 1.1x hand-written: {rows_h:.2f}x ({_verdict(rows_h, 1.1)})."]
    print("\n".join(table))
    if args.record:
        append_results("bench/peers.py", table)


def _verdict(measured: float, target: float) -> str:
    return "met" if measured >= target else f"missed by {(1 - measured / target) * 100:.0f} %"


if __name__ == "__main__":
    main()
