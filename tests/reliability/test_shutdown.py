"""Graceful shutdown and restart against a real `fusionrank serve` subprocess on 127.0.0.1.

Client threads send a steady stream of /v1/score requests through a load balancer of one: it sends
to the replica while its /readyz says ready (polled every 50 ms, as a Service's endpoints follow
readiness), and holds requests while none is ready. The replica gets SIGTERM mid-stream: /readyz
must turn 503 while scoring still answers, the process must exit 0 within drain + grace, and a
restarted replica on the same port takes over. Every request that was sent must be answered 200.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import ROOT

DRAIN_SECONDS = 1.0
GRACE_SECONDS = 10
CLIENTS = 3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _serve(store: Path, policies: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "FUSIONRANK_SHUTDOWN_DRAIN_SECONDS": str(DRAIN_SECONDS),
        "FUSIONRANK_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
        "FUSIONRANK_POLICY_WATCH_INTERVAL": "0",
    }
    with log.open("ab") as sink:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--model-store", str(store), "--policies", str(policies),
             "--port", str(port), "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=sink,
        )


def _wait_ready(base: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("the server did not become ready")


class Balancer:
    """Routes to the replica while its /readyz answers 200; holds requests otherwise."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.readyz_503_while_serving = 0
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        with httpx.Client(timeout=1) as client:
            while not self.stop.is_set():
                try:
                    code = client.get(f"{self.base}/readyz").status_code
                except httpx.TransportError:
                    code = 0
                if code == 503 and self.ready.is_set():
                    self.readyz_503_while_serving += 1
                (self.ready.set if code == 200 else self.ready.clear)()
                time.sleep(0.05)


@pytest.mark.slow
def test_sigterm_and_restart_lose_no_accepted_request(
    store_copy: tuple[Path, Path], sample_request: dict[str, Any]
) -> None:
    store, policies = store_copy
    log = store.parent / "serve.log"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    first = _serve(store, policies, port, log)
    second: subprocess.Popen[bytes] | None = None
    balancer = Balancer(base)
    outcomes: list[tuple[float, int | str]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client_loop() -> None:
        with httpx.Client(timeout=30) as client:
            for _ in range(20_000):  # bounded; the test stops the loop long before
                if stop.is_set():
                    return
                if not balancer.ready.wait(timeout=0.5):
                    continue
                try:
                    code: int | str = client.post(f"{base}/v1/score", json=sample_request).status_code
                except httpx.TransportError as exc:
                    code = type(exc).__name__
                with lock:
                    outcomes.append((time.monotonic(), code))

    try:
        _wait_ready(base, first, log)
        balancer.thread.start()
        threads = [threading.Thread(target=client_loop, daemon=True) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        sent_before = len(outcomes)
        term_at = time.monotonic()
        first.send_signal(signal.SIGTERM)
        # Draining: /readyz says 503 at once, while scoring still answers.
        with httpx.Client(timeout=5) as probe:
            assert probe.get(f"{base}/readyz").status_code == 503
            assert probe.get(f"{base}/readyz").json()["status"] == "draining"
            assert probe.post(f"{base}/v1/score", json=sample_request).status_code == 200
        exit_code = first.wait(timeout=DRAIN_SECONDS + GRACE_SECONDS + 5)
        exited_after = time.monotonic() - term_at
        assert exit_code == 0, log.read_text()
        assert exited_after < DRAIN_SECONDS + GRACE_SECONDS
        second = _serve(store, policies, port, log)
        _wait_ready(base, second, log)
        restarted_at = time.monotonic()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not [t for t, _ in list(outcomes) if t > restarted_at + 1.0]:
            time.sleep(0.1)
        stop.set()
        for thread in threads:
            thread.join(35)
    finally:
        stop.set()
        balancer.stop.set()
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(10)
    codes = [code for _, code in outcomes]
    failures = [code for code in codes if code != 200]
    assert sent_before > 10
    assert any(t > term_at for t, _ in outcomes)  # requests were sent during the drain ...
    assert any(t > restarted_at for t, _ in outcomes)  # ... and to the restarted replica
    assert failures == [], f"{len(failures)} of {len(codes)} failed: {failures[:10]}"
    during = sum(term_at < t < term_at + exited_after for t, _ in outcomes)
    print(f"shutdown: {len(codes)} requests, {during} sent between SIGTERM and exit, 0 failed;"
          f" exit 0 after {exited_after:.2f} s")  # shown with -s


def test_kubernetes_budget_covers_prestop_drain_and_grace() -> None:
    deployment = yaml.safe_load((ROOT / "deploy" / "k8s" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: float(e["value"]) for e in container["env"] if e["name"].startswith("FUSIONRANK_SHUTDOWN")}
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    budget = float(pre_stop[1]) + env["FUSIONRANK_SHUTDOWN_DRAIN_SECONDS"] + env["FUSIONRANK_SHUTDOWN_GRACE_SECONDS"]
    assert budget < pod["terminationGracePeriodSeconds"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
