"""A real `fusionrank serve` subprocess on 127.0.0.1 for tests whose behaviour is the server's, with
what they measure: its RSS, the latency of normal requests while something hostile goes on, raw sockets."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import MODEL_STORE, POLICIES, ROOT

__all__ = ["LiveServer", "Prober", "free_port", "live_server", "p99", "raw_request_head"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LiveServer:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_mb(self) -> float:
        """Resident set size of the server process now (VmRSS), in MB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS in /proc/<pid>/status")

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def metric(self, text: str) -> float:
        """Sum of the samples of /metrics whose line starts with `text` (0.0 when none)."""
        lines = httpx.get(f"{self.base}/metrics", timeout=5).text.splitlines()
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(text))


@contextmanager
def live_server(tmp: Path, **env: str) -> Iterator[LiveServer]:
    """`fusionrank serve` on the shipped bundle with FUSIONRANK_* overrides; killed on exit if still up."""
    port = free_port()
    log = tmp / f"serve-{port}.log"
    environment = {**os.environ, "FUSIONRANK_POLICY_WATCH_INTERVAL": "0", **env}
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--model-store", str(MODEL_STORE), "--policies",
             str(POLICIES), "--port", str(port), "--log-level", "info"],
            cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=sink,
        )
    server = LiveServer(process, port, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{server.base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.05)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def raw_request_head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


@dataclass
class Prober:
    """Normal /v1/score requests one after another on a thread; latencies and statuses while it runs."""

    server: LiveServer
    body: dict[str, Any]
    latencies: list[float] = field(default_factory=list)
    statuses: list[int | str] = field(default_factory=list)
    peak_rss_mb: float = 0.0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._sampler = threading.Thread(target=self._sample_rss, daemon=True)

    def _sample_rss(self) -> None:
        for _ in range(100_000):  # every 10 ms while the prober runs
            if self._stop.is_set():
                return
            self.peak_rss_mb = max(self.peak_rss_mb, self.server.rss_mb())
            time.sleep(0.01)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            for _ in range(100_000):  # bounded; stopped long before
                if self._stop.is_set():
                    return
                t0 = time.perf_counter()
                try:
                    code: int | str = client.post(f"{self.server.base}/v1/score", json=self.body).status_code
                except httpx.TransportError as exc:
                    code = type(exc).__name__
                self.latencies.append(time.perf_counter() - t0)
                self.statuses.append(code)
                time.sleep(0.005)

    def __enter__(self) -> Prober:
        self._thread.start()
        self._sampler.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(35)
        self._sampler.join(5)

    def idle_p99(self, count: int = 60) -> float:
        """p99 of `count` requests with nothing else going on (call before starting the prober)."""
        with httpx.Client(timeout=30) as client:
            for _ in range(5):
                client.post(f"{self.server.base}/v1/score", json=self.body)
            seconds = []
            for _ in range(count):
                t0 = time.perf_counter()
                assert client.post(f"{self.server.base}/v1/score", json=self.body).status_code == 200
                seconds.append(time.perf_counter() - t0)
        return p99(seconds)
