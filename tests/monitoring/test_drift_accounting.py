"""Drift schemes, feedback counters and PSI: exact sums a PromQL rule can rely on."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from app.artifacts.loading import load_calibration, load_manifest
from app.monitoring import (
    OTHER,
    DriftScheme,
    FeedbackCounters,
    SchemeCatalog,
    SchemeMiss,
    ServedPredictions,
    log_loss,
    population_stability_index,
)
from tests.conftest import BUNDLE


@pytest.fixture(scope="module")
def scheme() -> DriftScheme:
    manifest = load_manifest(BUNDLE)
    calibration = load_calibration(BUNDLE / "calibration" / "1.json")
    return DriftScheme.build(manifest, calibration, max_values=64)


def _versions(scheme: DriftScheme) -> dict[str, str]:
    return scheme.versions


def test_buckets_follow_the_calibration_edges(scheme: DriftScheme) -> None:
    edges = scheme.edges["click"]
    p = np.array([0.0, edges[0] - 1e-9, edges[0], edges[-1], 0.99])
    # An edge belongs to the bucket above it; the last bucket is open-ended.
    assert scheme.bucket_of("click", p).tolist() == [0, 0, 1, len(edges), len(edges)]


def test_segment_values_are_allow_listed_from_the_model_vocabulary(scheme: DriftScheme) -> None:
    assert set(scheme.segments) == {"user_tenure", "item_type", "device", "item_category"}
    assert scheme.segment_value("device", "ios") == "ios"
    assert scheme.segment_value("device", "fridge") == OTHER
    labels = list(scheme.segment_labels())
    assert ("device", OTHER) in labels and len(labels) == 4 + 4 + 3 + 20 + 4


def test_max_values_bounds_a_field(scheme: DriftScheme) -> None:
    manifest = load_manifest(BUNDLE)
    calibration = load_calibration(BUNDLE / "calibration" / "1.json")
    small = DriftScheme.build(manifest, calibration, max_values=5)
    assert len(small.segments["item_category"]) == 5
    assert small.segment_value("item_category", "cat19") == OTHER


def test_log_loss_matches_the_definition() -> None:
    p = np.array([0.2, 0.2, 0.0, 1.0])
    y = np.array([1.0, 0.0, 0.0, 1.0])
    assert log_loss(p, y)[:2] == pytest.approx([-math.log(0.2), -math.log(0.8)])
    assert log_loss(p, y)[2:] == pytest.approx([0.0, 0.0], abs=1e-12)  # clipped, finite


def test_record_adds_exact_sums_per_bucket_and_segment(scheme: DriftScheme) -> None:
    registry = CollectorRegistry()
    counters = FeedbackCounters(registry)
    counters.prime(scheme)
    edges = scheme.edges["click"]
    p = np.array([edges[0] / 2, edges[0] / 2, 0.5, 0.5, 0.5])
    y = np.array([1.0, 0.0, 1.0, 1.0, 0.0])
    segments = {"device": ["ios", "android", "ios", "fridge", None]}
    counters.record(scheme, "click", p, y, segments)
    base = {**_versions(scheme), "arm": "stable", "task": "click"}

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {**base, **labels})

    last = f"{len(edges):02d}"
    assert value("fusionrank_feedback_events_total", bucket="00") == 2
    assert value("fusionrank_feedback_prediction_sum_total", bucket="00") == pytest.approx(edges[0])
    assert value("fusionrank_feedback_label_sum_total", bucket=last) == 2
    assert value("fusionrank_feedback_logloss_sum_total", bucket=last) == pytest.approx(
        2 * -math.log(0.5) + -math.log(0.5)
    )
    assert value("fusionrank_feedback_events_total", bucket="01") == 0  # primed, never fed
    assert value("fusionrank_feedback_segment_events_total", field="device", value="ios") == 2
    assert value("fusionrank_feedback_segment_label_sum_total", field="device", value="ios") == 2
    assert value("fusionrank_feedback_segment_events_total", field="device", value=OTHER) == 1
    assert value("fusionrank_feedback_segment_events_total", field="device", value="android") == 1
    # The event without a device is in the buckets, not in any device series.
    devices = sum(
        value("fusionrank_feedback_segment_events_total", field="device", value=v) or 0.0
        for v in [*scheme.segments["device"], OTHER]
    )
    assert devices == 4


def test_psi_is_zero_on_the_reference_and_grows_with_shift() -> None:
    reference = np.full(10, 0.1)
    assert population_stability_index(reference, np.full(10, 50.0)) == pytest.approx(0.0)
    shifted = np.array([0, 0, 0, 0, 0, 100, 100, 100, 100, 100], dtype=float)
    # Half the buckets empty (floored at 1e-4), the other half doubled.
    expected = 5 * (0.2 - 0.1) * math.log(2) + 5 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert population_stability_index(reference, shifted) == pytest.approx(expected)
    assert expected > 0.2


def test_served_histogram_and_psi_window(scheme: DriftScheme) -> None:
    served = ServedPredictions()
    registry = CollectorRegistry()
    registry.register(served)
    key = (*_versions(scheme).values(), "stable", "click")
    edges = scheme.edges["click"]
    probabilities = np.full((400, len(scheme.tasks)), 0.5)  # all in the last bucket of every task
    probabilities[:100, 0] = edges[0] / 2  # 100 clicks in the first bucket
    served.observe(scheme, probabilities)
    labels = dict(zip(["model", "model_version", "calibration_version", "arm", "task"], key, strict=True))
    first_edge = repr(float(edges[0]))
    assert registry.get_sample_value("fusionrank_served_prediction_bucket", {**labels, "le": first_edge}) == 100
    assert registry.get_sample_value("fusionrank_served_prediction_bucket", {**labels, "le": "+Inf"}) == 400
    assert registry.get_sample_value("fusionrank_served_prediction_sum", labels) == pytest.approx(
        100 * edges[0] / 2 + 300 * 0.5
    )
    assert served.psi(*key) is None  # no tick yet
    served.tick(window_slots=2, min_predictions=500)
    assert served.psi(*key) is None  # 400 < 500: not published
    assert b"fusionrank_prediction_psi{" not in generate_latest(registry)
    served.tick(window_slots=2, min_predictions=100)
    expected = population_stability_index(scheme.reference["click"], np.bincount(
        scheme.bucket_of("click", probabilities[:, 0]), minlength=len(edges) + 1).astype(float))
    assert served.psi(*key) == pytest.approx(expected)
    assert registry.get_sample_value("fusionrank_prediction_psi", labels) == pytest.approx(expected)
    # The window slides: two more empty ticks and the old counts are gone, the histogram keeps them.
    served.tick(window_slots=2, min_predictions=100)
    assert served.psi(*key) is None
    assert registry.get_sample_value("fusionrank_served_prediction_count", labels) == 400
    # The canary arm of the same versions is primed at zero and was not touched.
    assert registry.get_sample_value("fusionrank_served_prediction_count", {**labels, "arm": "canary"}) == 0


def test_each_arm_has_its_own_histogram_and_psi_window(scheme: DriftScheme) -> None:
    """A canary serving the very same versions as the stable arm still has its own drift series."""
    served = ServedPredictions()
    registry = CollectorRegistry()
    registry.register(served)
    low = np.full((300, len(scheme.tasks)), scheme.edges["click"][0] / 2)  # first bucket of every task
    high = np.full((100, len(scheme.tasks)), 0.99)  # last bucket
    served.observe(scheme, low, "stable")
    served.observe(scheme, high, "canary")
    served.tick(window_slots=2, min_predictions=50)
    versions = list(_versions(scheme).values())
    for arm, count, column in (("stable", 300, low[:, 0]), ("canary", 100, high[:, 0])):
        labels = dict(zip(["model", "model_version", "calibration_version", "arm", "task"],
                          [*versions, arm, "click"], strict=True))
        assert registry.get_sample_value("fusionrank_served_prediction_count", labels) == count
        expected = population_stability_index(scheme.reference["click"], np.bincount(
            scheme.bucket_of("click", column), minlength=len(scheme.edges["click"]) + 1).astype(float))
        assert served.psi(*versions, arm, "click") == pytest.approx(expected)
        assert registry.get_sample_value("fusionrank_prediction_psi", labels) == pytest.approx(expected)
    assert served.psi(*versions, "stable", "click") != served.psi(*versions, "canary", "click")


def test_catalog_reads_older_versions_and_remembers_misses_briefly(store_copy: tuple[Path, Path]) -> None:
    store, _ = store_copy
    catalog = SchemeCatalog(miss_ttl=60.0)
    key = ("demo_ranker", "1", "0")
    miss = catalog.load(store, key)
    assert isinstance(miss, SchemeMiss) and miss.field == "calibration_version"
    calibrations = store / "demo_ranker" / "1" / "calibration"
    text = (calibrations / "1.json").read_text()
    (calibrations / "0.json").write_text(text.replace('"version": "1"', '"version": "0"', 1))
    assert catalog.cached(key) == miss  # within the TTL the miss is remembered, no disk read
    catalog.miss_ttl = 0.0
    assert catalog.cached(key) is None
    scheme = catalog.load(store, key)
    assert isinstance(scheme, DriftScheme) and scheme.calibration_version == "0"
    assert catalog.cached(key) is scheme
    unknown = catalog.load(store, ("demo_ranker", "2", "1"))
    assert isinstance(unknown, SchemeMiss) and unknown.field == "model_version"
