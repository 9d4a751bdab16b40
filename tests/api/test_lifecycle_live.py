"""50 activations of (model, calibration) triples under concurrent load against a real uvicorn.

Client threads post the golden batch (debug on) while the admin API cycles the surface through
model 1/2 x calibration 1/2 fifty times (rollbacks included). Every response must be a 200 and must
recompute exactly from the versions it names: its raw logits are that model version's golden logits
(to 1e-5) and its calibrated predictions are the offline apply of that calibration file on them.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from app.artifacts.loading import load_calibration, load_manifest
from app.serving.calibration import CalibrationSet
from app.serving.features import FeatureEncoder
from tests.conftest import ADMIN, ADMIN_TOKEN, make_settings
from tests.lifecycle_helpers import build_store, live_server

ACTIVATIONS = 50
CLIENTS = 3
MAX_REQUESTS_PER_CLIENT = 2000
DEADLINE_SECONDS = 120.0
TRIPLES = [("2", "1"), ("2", "2"), ("1", "2"), ("1", "1")]


def _expected(
    store: Path,
) -> tuple[dict[str, dict[str, list[float]]], dict[tuple[str, str], CalibrationSet], dict[str, dict[str, Any]]]:
    """model version -> candidate id -> golden logits; (model, calibration) -> the calibration as served;
    model version -> candidate id -> its encoded categorical row (segment corrections read it)."""
    golden: dict[str, dict[str, list[float]]] = {}
    calibrations = {}
    categorical: dict[str, dict[str, Any]] = {}
    for model in ("1", "2"):
        bundle = store / "demo_ranker" / model
        sample = json.loads((bundle / "sample_request.json").read_text())
        record = json.loads((bundle / "golden.json").read_text())
        golden[model] = {c["id"]: row for c, row in zip(sample["candidates"], record["logits"], strict=True)}
        manifest = load_manifest(bundle)
        encoded = FeatureEncoder(manifest.features).encode(
            [c.get("features", {}) for c in sample["candidates"]], sample["context"].get("features", {})
        ).categorical
        categorical[model] = {c["id"]: row for c, row in zip(sample["candidates"], encoded, strict=True)}
        for cal in ("1", "2"):
            calibrations[model, cal] = CalibrationSet(load_calibration(bundle / "calibration" / f"{cal}.json"),
                                                      manifest)
    return golden, calibrations, categorical


def test_fifty_activations_under_load_fail_nothing_and_mix_nothing(tmp_path: Path) -> None:
    store, policies = build_store(tmp_path)
    golden, calibrations, categorical = _expected(store)
    assert golden["1"] != golden["2"]
    sample = json.loads((store / "demo_ranker" / "1" / "sample_request.json").read_text())
    body = {**sample, "options": {"debug": True}}
    settings = make_settings(store, policies, admin_tokens={"ops": ADMIN_TOKEN}, policy_watch_interval=0.2)
    results: list[list[tuple[int, Any]]] = [[] for _ in range(CLIENTS)]
    running = threading.Event()
    start = time.monotonic()

    def hammer(base: str, out: list[tuple[int, Any]]) -> None:
        with httpx.Client(base_url=base, timeout=30) as http:
            while running.is_set() and len(out) < MAX_REQUESTS_PER_CLIENT:
                if time.monotonic() - start > DEADLINE_SECONDS:
                    break
                try:
                    response = http.post("/v1/score", json=body)
                    out.append((response.status_code, response.json()))
                except Exception as exc:  # a dropped connection is a failed request too
                    out.append((0, repr(exc)))

    applied = Counter[str]()
    with live_server(settings) as base:
        running.set()
        threads = [threading.Thread(target=hammer, args=(base, out)) for out in results]
        for thread in threads:
            thread.start()
        with httpx.Client(base_url=base, timeout=60, headers=ADMIN) as admin:
            for i in range(ACTIVATIONS):
                if i % 10 == 9:
                    response = admin.post("/admin/surfaces/home/rollback")
                else:
                    model, cal = TRIPLES[i % len(TRIPLES)]
                    response = admin.post("/admin/surfaces/home/activate",
                                          json={"model_version": model, "calibration_version": cal})
                assert response.status_code == 200, response.text
                applied[response.json()["outcome"]] += 1
                time.sleep(0.05)
        running.clear()
        for thread in threads:
            thread.join(60)
    elapsed = time.monotonic() - start
    responses = [r for out in results for r in out]
    failures = [r for r in responses if r[0] != 200]
    seen = Counter[tuple[str, str]]()
    for status, answer in responses:
        if status != 200:
            continue
        versions = answer["versions"]
        model, cal = versions["model_version"], versions["calibration_version"]
        seen[model, cal] += 1
        calibration = calibrations[model, cal]
        tasks = list(answer["candidates"][0]["predictions"])
        rows = answer["candidates"] + answer["filtered"]
        logits = np.array([[row["debug"]["logits"][t] for t in tasks] for row in rows], dtype=np.float32)
        np.testing.assert_allclose(logits, [golden[model][row["id"]] for row in rows], atol=1e-5, rtol=0)
        codes = np.array([categorical[model][row["id"]] for row in rows], dtype=np.int64)
        recomputed = calibration.apply(logits, codes)
        for row, expected in zip(answer["candidates"], recomputed, strict=False):
            assert [row["predictions"][t] for t in tasks] == expected.tolist()  # exactly, not approximately
    print(f"\nlifecycle under load: {ACTIVATIONS} activations ({dict(applied)}), {len(responses)} requests,"
          f" {len(failures)} failed, by (model, calibration) {dict(seen)}, {elapsed:.1f} s")
    assert failures == []
    assert applied["applied"] == ACTIVATIONS
    assert len(seen) == 4 and min(seen.values()) > 0  # every triple really served during the run
