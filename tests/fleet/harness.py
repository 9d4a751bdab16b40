"""A fleet on one machine: N `fusionrank serve` replicas sharing one store folder, behind HAProxy.

Used by the fleet test (tests/fleet/test_fleet.py) and the convergence benchmark
(bench/fleet_convergence.py). Every process binds 127.0.0.1; `Fleet.stop()` ends the ones it started.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

__all__ = ["ADMIN", "ADMIN_TOKENS", "Arrival", "Fleet", "Replica", "free_port", "haproxy_binary", "triple"]

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKENS = {"alice": "alice-fleet-token-0123456789", "bob": "bob-fleet-token-0123456789ab"}
ADMIN = {"authorization": f"Bearer {ADMIN_TOKENS['alice']}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def haproxy_binary() -> str:
    """Path of haproxy; `apt-get install haproxy` first when it is missing (CI runs as root)."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if found:
        return found
    install = ["apt-get", "install", "-y", "--no-install-recommends", "haproxy"]
    done = subprocess.run(install, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:  # a fresh machine has no package lists yet
        subprocess.run(["apt-get", "update"], capture_output=True, text=True, timeout=600)
        done = subprocess.run(install, capture_output=True, text=True, timeout=600)
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise RuntimeError(f"haproxy is missing and `{' '.join(install)}` did not provide it:\n{done.stderr[-2000:]}")
    return found


def triple(versions: dict[str, Any]) -> tuple[str, str, str]:
    """(model_version, calibration_version, policy_version) of a response's or a probe's versions block."""
    return versions["model_version"], versions["calibration_version"], versions["policy_version"]


@dataclass
class Replica:
    """One `fusionrank serve` process."""

    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass(frozen=True)
class Arrival:
    """When a replica installed a rollout generation, by its own clock (`applied_at`; the replicas share this
    machine's clock), as seconds after the caller's `since` (a `time.time()`), and how long serving that change
    took on the replica (its `apply_seconds`: validate, golden batch, load and warm, swap)."""

    seconds: float
    apply_seconds: float


@dataclass
class Fleet:
    """N replicas on one store folder (`root`), HAProxy round-robin in front (`url`)."""

    root: Path
    replicas: int = 3
    poll_interval: float = 0.25
    replica_list: list[Replica] = field(default_factory=list)
    proxy: subprocess.Popen[bytes] | None = None
    proxy_port: int = 0
    # One client for every probe: a client per call would build an SSL context each time (~20 ms).
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=5.0))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def policies(self) -> Path:
        return self.root / "policies"

    def start(self) -> Fleet:
        self.replica_list = [Replica(free_port(), self.root / f"replica-{i}.log") for i in range(self.replicas)]
        for replica in self.replica_list:
            self.launch(replica)
        for replica in self.replica_list:
            self.wait_ready(replica)
        self._start_proxy()
        return self

    def launch(self, replica: Replica) -> None:
        env = {
            **os.environ, "PYTHONPATH": str(ROOT), "FUSIONRANK_ADMIN_TOKENS": json.dumps(ADMIN_TOKENS),
            "FUSIONRANK_POLICY_WATCH_INTERVAL": str(self.poll_interval), "FUSIONRANK_ORT_INTRA_OP_THREADS": "1",
        }
        command = [sys.executable, "-m", "app.cli", "serve", "--model-store", str(self.root / "model_store"),
                   "--policies", str(self.policies), "--port", str(replica.port), "--log-level", "warning"]
        with replica.log.open("ab") as log:
            replica.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)

    def wait_ready(self, replica: Replica, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert replica.process is not None
            if replica.process.poll() is not None:
                raise RuntimeError(f"replica on {replica.port} exited: {replica.log.read_text()[-3000:]}")
            try:
                if self.http.get(f"{replica.url}/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"replica on {replica.port} not ready after {timeout}s: {replica.log.read_text()[-3000:]}")

    def kill(self, replica: Replica) -> None:
        """`kill -9`: no drain, no flush."""
        assert replica.process is not None
        replica.process.send_signal(signal.SIGKILL)
        replica.process.wait(10)

    def serving(self, replica: Replica) -> tuple[tuple[str, str, str], int]:
        """What a replica serves on `home` (its triple) and the rollout generation it applied."""
        ready = self.http.get(f"{replica.url}/readyz").json()
        rollout = self.http.get(f"{replica.url}/admin/rollouts/home", headers=ADMIN).json()
        return triple(ready["surfaces"]["home"]), int(rollout["serving_generation"])

    def arrivals(self, generation: int, since: float, timeout: float = 30.0) -> list[Arrival]:
        """Per replica, when it installed `generation`, as seconds after `since` (a `time.time()` taken when the
        admin write returned): read from the replica's own `applied_at`, so probing latency under load does not
        count. Fails when a replica has not served it within `timeout` s."""
        found: dict[int, Arrival] = {}
        deadline = time.monotonic() + timeout
        while len(found) < len(self.replica_list) and time.monotonic() < deadline:
            for index, replica in enumerate(self.replica_list):
                if index in found:
                    continue
                rollout = self.http.get(f"{replica.url}/admin/rollouts/home", headers=ADMIN).json()
                if int(rollout["serving_generation"]) == generation:
                    applied = datetime.fromisoformat(rollout["applied_at"]).timestamp()
                    found[index] = Arrival(applied - since, float(rollout["apply_seconds"]))
            time.sleep(0.02)
        missing = [r.port for i, r in enumerate(self.replica_list) if i not in found]
        if missing:
            raise AssertionError(f"replicas on ports {missing} did not serve generation {generation} in {timeout}s")
        return [found[i] for i in range(len(self.replica_list))]

    def _start_proxy(self) -> None:
        self.proxy_port = free_port()
        servers = "\n".join(
            f"    server r{i} 127.0.0.1:{r.port} check inter 200 fall 2 rise 1"
            for i, r in enumerate(self.replica_list)
        )
        config = self.root / "haproxy.cfg"
        config.write_text(f"""global
    maxconn 256
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    retries 3
    option redispatch
frontend fleet
    bind 127.0.0.1:{self.proxy_port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /healthz
    retry-on conn-failure empty-response response-timeout
{servers}
""")
        with (self.root / "haproxy.log").open("ab") as log:
            self.proxy = subprocess.Popen([haproxy_binary(), "-f", str(config), "-db"], stdout=subprocess.DEVNULL,
                                          stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.http.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"haproxy did not start: {(self.root / 'haproxy.log').read_text()[-2000:]}")

    def stop(self) -> None:
        self.http.close()
        for process in [self.proxy, *(r.process for r in self.replica_list)]:
            if process is not None and process.poll() is None:
                process.terminate()
        for process in [self.proxy, *(r.process for r in self.replica_list)]:
            if process is not None:
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
