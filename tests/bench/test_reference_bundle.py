"""The benchmarks' reference-shape bundle loads, passes its golden check and is served with the demo policy."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from app.control.loader import load_snapshot
from app.main import create_app
from app.settings import Settings

pytest.importorskip("torch")

from bench import common
from bench.reference_bundle import NUMERIC


def test_reference_store_is_served_with_the_issue_shape(tmp_path: Path) -> None:
    store, policies = common.segmented_store(tmp_path, "reference")
    try:
        snapshot = load_snapshot(store, policies)  # checks sha256, calibration, policy and golden logits
        binding = snapshot.route("home").binding(None)
        manifest = binding.bundle.manifest
        assert [f.name for f in manifest.features.numeric] == NUMERIC
        assert len(manifest.features.categorical) == 4
        assert len(manifest.task_names()) == 5
        body = common.request_with(1000)
        assert all(len(c["features"]) == 52 for c in body["candidates"])
        with TestClient(create_app(Settings(model_store=store, policies=policies))) as client:
            answer = client.post("/v1/score", content=orjson.dumps(body), headers={"content-type": "application/json"})
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["candidates"]) == 20  # the policy's top_k: the guardrail keeps most candidates
    finally:
        common._sample_from = common.BUNDLE  # later tests grow bodies from the shipped demo bundle again
