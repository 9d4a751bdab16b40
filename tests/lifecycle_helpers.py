"""A model store with two model versions and two calibration versions each, and a live uvicorn.

Version 2 is version 1 with its trunk and head weights perturbed (a genuinely different model: other
logits, other sha256), exported with its own manifest, golden batch and calibrations; calibration 2
of each model is calibration 1 with other Platt coefficients. Built in a second (no torch, no demo run).
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn

from app.artifacts.common import sha256_file
from app.artifacts.loading import load_manifest
from app.main import create_app
from app.serving.golden import write_golden
from app.serving.model_runner import ModelRunner
from app.settings import Settings
from tests.conftest import MODEL_STORE, POLICIES

__all__ = ["build_store", "live_server", "new_model_version", "set_calibration_version"]


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def _golden(bundle: Path) -> None:
    manifest = load_manifest(bundle)
    sample = json.loads((bundle / "sample_request.json").read_text())
    write_golden(bundle, manifest, ModelRunner(bundle / "model.onnx", manifest), sample)


def new_model_version(store: Path, version: str, *, scale: float = 1.15, seed: int = 2) -> Path:
    """Copy demo_ranker/1 as `version` with perturbed weights, a fresh manifest, golden and calibration 1."""
    import onnx
    from onnx import numpy_helper

    source = store / "demo_ranker" / "1"
    target = store / "demo_ranker" / version
    shutil.copytree(source, target)
    model = onnx.load(str(target / "model.onnx"))
    rng = np.random.default_rng(seed)
    for init in model.graph.initializer:
        if init.name.startswith(("trunk.", "heads.")):
            array = numpy_helper.to_array(init)
            noisy = array * scale + rng.normal(0, 0.05, array.shape).astype(array.dtype)
            init.CopyFrom(numpy_helper.from_array(noisy.astype(array.dtype), init.name))
    onnx.save(model, str(target / "model.onnx"))
    sha = sha256_file(target / "model.onnx")
    manifest = json.loads((target / "manifest.json").read_text())
    manifest.update(version=version, model_sha256=sha)
    _write_json(target / "manifest.json", manifest)
    for path in (target / "calibration").glob("*.json"):
        calibration = json.loads(path.read_text())
        calibration["model"].update(version=version, sha256=sha)
        _write_json(path, calibration)
    _golden(target)
    return target


def set_calibration_version(bundle: Path, version: str, *, a: float = 0.9, b: float = 0.1) -> Path:
    """calibration/<version>.json: calibration 1 with Platt (a * coef, b + shift)."""
    calibration = json.loads((bundle / "calibration" / "1.json").read_text())
    calibration["version"] = version
    for task in calibration["tasks"].values():
        task["calibrator"]["a"] = task["calibrator"]["a"] * a
        task["calibrator"]["b"] = task["calibrator"]["b"] + b
    path = bundle / "calibration" / f"{version}.json"
    _write_json(path, calibration)
    return path


def build_store(root: Path) -> tuple[Path, Path]:
    """root/model_store with demo_ranker/{1,2} x calibration {1,2}, all with golden batches; root/policies."""
    store, policies = root / "model_store", root / "policies"
    shutil.copytree(MODEL_STORE, store)
    shutil.copytree(POLICIES, policies)
    _golden(store / "demo_ranker" / "1")
    new_model_version(store, "2")
    for version in ("1", "2"):
        set_calibration_version(store / "demo_ranker" / version, "2")
    return store, policies


@contextmanager
def live_server(settings: Settings) -> Iterator[str]:
    """The app under uvicorn in a thread, on a free port of 127.0.0.1; stopped afterwards."""
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning", ws="none", lifespan="on"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
        assert not thread.is_alive()
