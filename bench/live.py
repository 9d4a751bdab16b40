"""A real `fusionrank serve` on 127.0.0.1 over a temporary copy of policies/, for the reliability benches.

The copy matters: the soak and fuzz runs activate policy versions through the admin API, and the
service persists the active pointer; the shipped policies/ must never change.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from bench.common import ROOT

ADMIN_TOKEN = "bench-admin-token-0123456789"
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass
class Live:
    url: str
    pid: int
    policies: Path

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far, all its threads."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def live_server(port: int, env: dict[str, str] | None = None, timeout_s: float = 90.0) -> Iterator[Live]:
    with tempfile.TemporaryDirectory(prefix="fusionrank-bench-") as tmp:
        policies = Path(tmp) / "policies"
        shutil.copytree(ROOT / "policies", policies)
        command = [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--log-level", "warning",
                   "--model-store", str(ROOT / "model_store"), "--policies", str(policies)]
        full_env = {**os.environ, "FUSIONRANK_ADMIN_TOKEN": ADMIN_TOKEN, **(env or {})}
        with (Path(tmp) / "serve.log").open("ab") as log:
            process = subprocess.Popen(command, cwd=ROOT, env=full_env, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                        break
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the service did not become ready:\n" + (Path(tmp) / "serve.log").read_text())
                time.sleep(0.2)
            yield Live(url, process.pid, policies)
        finally:
            process.terminate()
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def session_priority(nice: int | None) -> str:
    """Put this bench (and the server it starts) ahead of other sessions' jobs; a description for the record.

    With sched_autogroup on (as on this machine: /proc/sys/kernel/sched_autogroup_enabled is 1) the kernel
    shares the CPU between sessions first, and `nice` only orders the processes of one session: `nice -n
    -15` alone gains nothing against other engineers' jobs. Started as a session leader (`setsid -w ...`),
    the bench has an autogroup of its own, whose niceness root can set. None: leave the priority alone.
    """
    group = Path("/proc/self/autogroup")
    if nice is not None:
        if os.getsid(0) != os.getpid():
            raise SystemExit("--session-nice needs the bench to lead its own session: start it with `setsid -w`")
        group.write_text(f"{nice}\n")
    text = group.read_text().strip() if group.exists() else "no autogroup"
    return f"{text}, process nice {os.getpriority(os.PRIO_PROCESS, 0)}"


def closed_loop_throughput(url: str, body: bytes, *, clients: int, seconds: float) -> float:
    """Requests per second answered 200 with `clients` threads sending back to back."""
    stop = time.monotonic() + seconds
    counts = [0] * clients

    def loop(i: int) -> None:
        with httpx.Client(timeout=10) as client:
            for _ in range(1_000_000):
                if time.monotonic() > stop:
                    return
                r = client.post(f"{url}/v1/score", content=body, headers={"content-type": "application/json"})
                counts[i] += r.status_code == 200

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    return sum(counts) / (time.monotonic() - t0)


class OpenLoop:
    """Send at a fixed rate from `workers` threads whatever the answers (bounded by time and count)."""

    def __init__(self, url: str, body: bytes, *, workers: int, timeout_s: float = 10.0) -> None:
        self.url, self.body, self.workers, self.timeout_s = url, body, workers, timeout_s
        self.lock = threading.Lock()
        self.samples: list[tuple[float, float, int | str]] = []  # (sent at, seconds, status or error)

    def run(self, rate: float, seconds: float, max_requests: int = 2_000_000) -> None:
        """A worker still waiting for an answer sends its due requests late, back to back, until it has caught
        up; none is sent past the end of the run."""
        interval = self.workers / rate
        start = time.monotonic()
        end = start + seconds
        per_worker = max_requests // self.workers

        def loop(offset: float) -> None:
            with httpx.Client(timeout=self.timeout_s, limits=httpx.Limits(max_connections=64)) as client:
                for k in range(per_worker):
                    due = start + offset + k * interval
                    if due > end or time.monotonic() > end:  # a client that fell behind stops on time
                        return
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    t0 = time.monotonic()
                    try:
                        code: int | str = client.post(
                            f"{self.url}/v1/score", content=self.body, headers={"content-type": "application/json"}
                        ).status_code
                    except httpx.HTTPError as exc:
                        code = type(exc).__name__
                    with self.lock:
                        self.samples.append((t0, time.monotonic() - t0, code))

        threads = [threading.Thread(target=loop, args=(i * interval / self.workers,)) for i in range(self.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + self.timeout_s + 30)


def p50_p99_ms(seconds: list[float]) -> tuple[float, float]:
    if not seconds:
        return float("nan"), float("nan")
    values = np.asarray(seconds) * 1000
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))
