"""Tools the deploy tests run for real: installed from Debian when missing, never skipped."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def debian_tool(binary: str, package: str) -> str:
    """Path of `binary`; `apt-get install package` first when it is missing (CI runs as root)."""
    found = shutil.which(binary)
    if found:
        return found
    install = ["apt-get", "install", "-y", "--no-install-recommends", package]
    done = subprocess.run(install, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:  # a fresh machine has no package lists yet
        subprocess.run(["apt-get", "update"], capture_output=True, text=True, timeout=600)
        done = subprocess.run(install, capture_output=True, text=True, timeout=600)
    found = shutil.which(binary)
    if not found:
        pytest.fail(f"{binary} is missing and `{' '.join(install)}` did not provide it:\n{done.stderr[-2000:]}")
    return found


@pytest.fixture(scope="session")
def promtool() -> str:
    return debian_tool("promtool", "prometheus")


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    return debian_tool("prometheus", "prometheus")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
