"""Helpers shared by the benchmarks: requests of N candidates, a served instance, machine facts."""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "model_store" / "demo_ranker" / "1"
RESULTS = ROOT / "bench" / "RESULTS.md"


# The bundle whose sample request the bodies grow from: the demo bundle, or the bench's copy chosen
# by `segmented_store` (the reference shape's sample has other features).
_sample_from = BUNDLE


def sample_request() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((_sample_from / "sample_request.json").read_text())
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


def columns_with(n: int, seed: int = 0) -> dict[str, Any]:
    """`request_with(n)` as column-oriented JSON: `columns.id` and one list per feature and attribute."""
    rows = request_with(n, seed)
    candidates = rows.pop("candidates")
    names: dict[str, str] = {}
    for c in candidates:
        for section in ("features", "attributes"):
            for name in c.get(section, {}):
                names.setdefault(name, section)
    columns: dict[str, list[Any]] = {"id": [c["id"] for c in candidates]}
    for name, section in names.items():
        columns[name] = [c.get(section, {}).get(name) for c in candidates]
    return {**rows, "columns": columns}


def arrow_with(n: int, seed: int = 0) -> bytes:
    """`request_with(n)` as an Arrow IPC stream (envelope in the schema metadata)."""
    import orjson
    import pyarrow as pa

    columnar = columns_with(n, seed)
    columns = columnar.pop("columns")
    batch = pa.RecordBatch.from_pydict(
        {name: pa.array(values) for name, values in columns.items()},
        metadata={b"fusionrank.request": orjson.dumps(columnar)},
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())


MODELS = {
    "demo": "demo bundle demo_ranker/1 (8 numeric + 4 categorical features, 64-32 trunk, 4 heads)",
    "reference": "the issue's reference shape (bench/reference_bundle.py: 48 numeric + 4 categorical features "
                 "per candidate, 256-128 trunk, 5 heads)",
}


def segmented_store(folder: Path, model: str = "demo") -> tuple[Path, Path]:
    """Copies of model_store/ and policies/ whose calibration has set segment corrections.

    The benchmarks replace the calibration's per-value corrections on `user_tenure` and
    `item_type` by fixed ones for every task, so that the segment stage runs as it would in
    production and every run reads the same files (fusionrank and the peers alike). model:
    "demo" (the shipped bundle) or "reference" (the issue's 48 + 4 features, 256-128 trunk, 5
    heads; bench/reference_bundle.py). The bodies built afterwards grow from that bundle's sample.
    """
    global _sample_from
    if model == "reference":
        from bench.reference_bundle import build_reference_store

        store, policies = build_reference_store(ROOT / "model_store", ROOT / "policies", folder)
    else:
        store, policies = folder / "model_store", folder / "policies"
        shutil.copytree(ROOT / "model_store", store)
        shutil.copytree(ROOT / "policies", policies)
    bundle = store / "demo_ranker" / "1"
    _sample_from = bundle
    path = bundle / "calibration" / "1.json"
    calibration = json.loads(path.read_text())
    manifest = json.loads((bundle / "manifest.json").read_text())
    vocabularies = {f["name"]: f["vocabulary"] for f in manifest["features"]["categorical"]}
    for t, task in enumerate(calibration["tasks"].values()):
        task["segments"] = [
            {"feature": feature, "shrinkage_prior": 100.0, "values": {
                value: {"a": 1.0 + 0.05 * ((i + t) % 3 - 1), "b": 0.1 * ((i * 7 + t) % 5 - 2), "count": 1000}
                for i, value in enumerate(vocabularies[feature])
            }}
            for feature in ("user_tenure", "item_type")
        ]
    path.write_text(json.dumps(calibration, indent=2))
    return store, policies


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


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


@dataclass(frozen=True)
class Served:
    """A server the benchmark started: base URL, its process id, seconds from spawn to ready."""

    url: str
    pid: int
    ready_seconds: float

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (its children excluded)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


@contextlib.contextmanager
def served(
    port: int, env: dict[str, str] | None = None, timeout_s: float = 60.0, *,
    store: tuple[Path, Path] | None = None, workers: int = 1, command: list[str] | None = None,
    ready_path: str = "/readyz",
) -> Iterator[Served]:
    """`fusionrank serve` (or `command`) on 127.0.0.1:port until the block ends."""
    model_store, policies = store or (ROOT / "model_store", ROOT / "policies")
    command = command or [
        sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--log-level", "warning",
        "--model-store", str(model_store), "--policies", str(policies), "--workers", str(workers),
    ]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}{ready_path}", timeout=1) as answer:
                if answer.status == 200:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the service did not become ready")
            time.sleep(0.05)
        yield Served(url, process.pid, time.perf_counter() - started)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def hey(
    url: str, body: bytes, content_type: str, *, count: int, concurrency: int, accept: str | None = None,
    time_limit_s: int = 120,
) -> tuple[list[float], float]:
    """POST `body` `count` times at `concurrency` with hey (127.0.0.1 only): (seconds per 200, wall s).

    Exits when a request fails: a benchmark of errors measures nothing.
    """
    if not url.startswith("http://127.0.0.1:"):
        raise SystemExit(f"load generators target 127.0.0.1 only, not {url}")
    tool = require("hey", "hey")
    with tempfile.NamedTemporaryFile(suffix=".body") as file:
        file.write(body)
        file.flush()
        command = [tool, "-n", str(count), "-c", str(concurrency), "-m", "POST", "-T", content_type,
                   "-D", file.name, "-t", "30", "-o", "csv"]
        if accept:
            command += ["-H", f"Accept: {accept}"]
        started = time.perf_counter()
        out = subprocess.run(
            [*command, url], capture_output=True, text=True, check=True, timeout=time_limit_s
        ).stdout
        elapsed = time.perf_counter() - started
    rows = list(csv.DictReader(io.StringIO(out)))
    ok = [float(r["response-time"]) for r in rows if r["status-code"] == "200"]
    if len(ok) != len(rows) or not rows:
        raise SystemExit(f"{len(rows) - len(ok)} of {len(rows)} requests to {url} failed")
    return ok, elapsed


def require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise SystemExit(f"{tool} is needed for this benchmark: apt-get install {package}")
    return path


def append_results(title: str, lines: list[str]) -> None:
    header = "# Benchmark results\n\nEach section is one run, appended by the script named in its title.\n"
    text = RESULTS.read_text() if RESULTS.exists() else header
    RESULTS.write_text(text.rstrip() + "\n\n" + f"## {title}\n\n" + "\n".join(lines) + "\n")
