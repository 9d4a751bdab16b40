"""Helpers shared by the benchmarks: requests of N candidates, a served instance, machine facts."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "model_store" / "demo_ranker" / "1"
RESULTS = ROOT / "bench" / "RESULTS.md"


def sample_request() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((BUNDLE / "sample_request.json").read_text())
    return data


def request_with(n: int, seed: int = 0) -> dict[str, Any]:
    """The sample request grown to `n` candidates: copies with jittered numeric features, unique ids."""
    rng = np.random.default_rng(seed)
    base = sample_request()
    pool = base["candidates"]
    candidates = []
    for i in range(n):
        candidate = copy.deepcopy(pool[i % len(pool)])
        candidate["id"] = f"{candidate['id']}-{i}"
        for name, value in candidate["features"].items():
            if isinstance(value, float):
                candidate["features"][name] = round(value * float(rng.uniform(0.8, 1.2)), 4)
        candidates.append(candidate)
    base["candidates"] = candidates
    base["options"] = {"debug": False, "return_filtered": False}
    return base


def percentiles(samples_s: list[float]) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    values = np.asarray(samples_s) * 1000.0
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import onnxruntime

    return (f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, onnxruntime {onnxruntime.__version__}")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def served(port: int, env: dict[str, str] | None = None, timeout_s: float = 60.0) -> Iterator[str]:
    """`fusionrank serve` on 127.0.0.1:port until the block ends; yields the base URL."""
    command = [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--log-level", "warning",
               "--model-store", str(ROOT / "model_store"), "--policies", str(ROOT / "policies")]
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/readyz", timeout=1) as answer:
                if answer.status == 200:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the service did not become ready")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise SystemExit(f"{tool} is needed for this benchmark: apt-get install {package}")
    return path


def append_results(title: str, lines: list[str]) -> None:
    header = "# Benchmark results\n\nEach section is one run, appended by the script named in its title.\n"
    text = RESULTS.read_text() if RESULTS.exists() else header
    RESULTS.write_text(text.rstrip() + "\n\n" + f"## {title}\n\n" + "\n".join(lines) + "\n")
