"""Golden batch, bundle pins, canary routing and shadow-model comparison, in isolation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from app.artifacts.loading import load_manifest
from app.control.loader import BundleCache
from app.control.pins import BundlePin, read_pin, remove_pin, write_pin
from app.errors import ArtifactError
from app.serving.features import FeatureEncoder
from app.serving.golden import GOLDEN_FILE, check_golden, write_golden
from app.serving.model_runner import ModelRunner
from app.serving.routing import arm_point, key_value, routes_to_canary
from app.serving.shadow_model import kendall_tau
from tests.conftest import BUNDLE


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    target = tmp_path / "demo_ranker" / "1"
    shutil.copytree(BUNDLE, target)
    return target


def _parts(bundle: Path) -> tuple[object, ModelRunner, FeatureEncoder, dict[str, object]]:
    manifest = load_manifest(bundle)
    sample = json.loads((bundle / "sample_request.json").read_text())
    return manifest, ModelRunner(bundle / "model.onnx", manifest), FeatureEncoder(manifest.features), sample


def test_golden_batch_round_trips_and_catches_a_drifted_logit(bundle: Path) -> None:
    manifest, runner, encoder, sample = _parts(bundle)
    (bundle / GOLDEN_FILE).unlink(missing_ok=True)  # start from a bundle without a golden batch
    assert check_golden(bundle, manifest, runner, encoder, sample) is None  # type: ignore[arg-type]
    write_golden(bundle, manifest, runner, sample)  # type: ignore[arg-type]
    assert check_golden(bundle, manifest, runner, encoder, sample) == 0.0  # type: ignore[arg-type]
    record = json.loads((bundle / GOLDEN_FILE).read_text())
    record["logits"][3][1] += 2e-5  # just beyond the 1e-5 tolerance
    (bundle / GOLDEN_FILE).write_text(json.dumps(record))
    with pytest.raises(ArtifactError, match="golden logits only to"):
        check_golden(bundle, manifest, runner, encoder, sample)  # type: ignore[arg-type]
    # The loader refuses the bundle as a whole.
    with pytest.raises(ArtifactError, match="golden"):
        BundleCache(bundle.parent.parent, 1).bundle("demo_ranker", "1")
    record["logits"][3][1] -= 1.5e-5  # within tolerance again
    (bundle / GOLDEN_FILE).write_text(json.dumps(record))
    assert BundleCache(bundle.parent.parent, 1).bundle("demo_ranker", "1").golden_max_abs_diff == pytest.approx(
        5e-6, abs=1e-6
    )


def test_pins_round_trip_and_refuse_nonsense(tmp_path: Path) -> None:
    assert read_pin(tmp_path) is None
    write_pin(tmp_path, BundlePin("2", "cal-3"))
    assert read_pin(tmp_path) == BundlePin("2", "cal-3")
    (tmp_path / "bundle").write_text('{"model_version": "../x", "calibration_version": "1"}')
    with pytest.raises(ArtifactError, match="not a version name"):
        read_pin(tmp_path)
    (tmp_path / "bundle").write_text("2 1")
    with pytest.raises(ArtifactError, match="not a bundle pin"):
        read_pin(tmp_path)
    remove_pin(tmp_path)
    assert read_pin(tmp_path) is None


def test_canary_routing_is_sticky_uniform_and_monotone_in_the_fraction() -> None:
    users = [f"user-{i}" for i in range(20_000)]
    points = np.array([arm_point("home", u) for u in users])
    assert abs((points < 0.1).mean() - 0.1) < 0.01 and abs((points < 0.5).mean() - 0.5) < 0.015
    assert arm_point("home", "user-1") == arm_point("home", "user-1") != arm_point("other", "user-1")
    at_10 = {u for u in users[:2000] if routes_to_canary("home", u, 0.1)}
    at_30 = {u for u in users[:2000] if routes_to_canary("home", u, 0.3)}
    assert at_10 < at_30  # raising the fraction only moves users into the canary
    assert not routes_to_canary("home", None, 0.9)
    body = {"context": {"user_id": "u1", "attributes": {"segment": "new", "flag": True}}}
    assert key_value(body, "context.user_id") == "u1"
    assert key_value(body, "context.attributes.segment") == "new"
    assert key_value(body, "context.attributes.flag") is None  # booleans would split 50/50 by design
    assert key_value(body, "context.missing") is None


def test_kendall_tau() -> None:
    order = np.array([4, 2, 0, 1, 3], dtype=np.intp)
    assert kendall_tau(order, order) == 1.0
    assert kendall_tau(order, order[::-1].copy()) == -1.0
    swapped = np.array([2, 4, 0, 1, 3], dtype=np.intp)  # one discordant pair out of ten
    assert kendall_tau(order, swapped) == pytest.approx(0.8)
    assert kendall_tau(order, np.array([9, 8], dtype=np.intp)) is None  # nothing in common
