"""Feedback without loss or double counting: a retried batch counts once, a bad event rejects only itself."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.monitoring.dedup import RecentEventIds
from tests.api.test_feedback import VERSIONS, event, sample

LABELS = {**VERSIONS, "arm": "stable", "task": "click"}


def _counted(client: TestClient) -> float:
    return sum(
        sample(client, "fusionrank_feedback_events_total", **LABELS, bucket=f"{b:02d}") or 0.0 for b in range(10)
    )


def test_a_retried_batch_is_counted_once(client_factory: Callable[..., TestClient]) -> None:
    client = client_factory()
    batch = {"events": [event(f"e{i}", prediction=i / 10) for i in range(5)]}
    first = client.post("/v1/feedback", json=batch).json()
    assert first == {"accepted": 5, "rejected": [], "duplicates": []}
    retry = client.post("/v1/feedback", json=batch).json()  # e.g. the caller timed out and sent it again
    assert retry == {"accepted": 0, "rejected": [], "duplicates": [0, 1, 2, 3, 4]}
    assert _counted(client) == 5
    assert sample(client, "fusionrank_feedback_duplicate_events_total") == 5
    # A retry that adds one new event counts just that one.
    grown = client.post("/v1/feedback", json={"events": [*batch["events"], event("e5")]}).json()
    assert grown["accepted"] == 1 and grown["duplicates"] == [0, 1, 2, 3, 4]
    assert _counted(client) == 6


def test_a_malformed_event_rejects_only_itself_and_can_be_resent_fixed(
    client_factory: Callable[..., TestClient],
) -> None:
    client = client_factory()
    events = [event("ok-1"), event("bad", prediction=7.0), event("ok-2"), {"event_id": "x", "junk": [1, 2]}]
    answer = client.post("/v1/feedback", json={"events": events}).json()
    assert answer["accepted"] == 2
    assert [(r["index"], r["field"]) for r in answer["rejected"]] == [(1, "prediction"), (3, "task")]
    assert "fix" in answer["rejected"][0]["reason"]
    assert _counted(client) == 2
    # The rejected event was not remembered: fixed and resent with the same id, it counts.
    fixed = client.post("/v1/feedback", json={"events": [event("bad", prediction=0.7)]}).json()
    assert fixed == {"accepted": 1, "rejected": [], "duplicates": []}
    assert _counted(client) == 3


def test_the_window_is_bounded_by_count_and_age() -> None:
    now = [0.0]
    window = RecentEventIds(max_ids=3, max_age_seconds=60, clock=lambda: now[0])
    window.add([("a", "click"), ("b", "click"), ("c", "click")])
    assert all((i, "click") in window for i in "abc")
    window.add([("d", "click")])  # the oldest key is forgotten past max_ids
    assert ("a", "click") not in window and len(window) == 3
    now[0] = 61.0
    assert ("d", "click") not in window and len(window) == 0  # and past max_age_seconds
    window.add([("x" * 10_000, "click")])
    assert ("x" * 10_000, "click") in window
    off = RecentEventIds(max_ids=0, max_age_seconds=60)
    off.add([("a", "click")])
    assert ("a", "click") not in off


def test_the_window_keys_on_event_id_and_task() -> None:
    window = RecentEventIds(max_ids=10, max_age_seconds=60)
    window.add([("e1", "click")])
    assert ("e1", "click") in window
    assert ("e1", "purchase") not in window
    # Neither part can leak into the other: the split between id and task is part of the key.
    window.add([("ab", "c")])
    assert ("a", "bc") not in window and ("abc", "") not in window
    window.add([("e1", "purchase")])
    assert len(window) == 3  # a key, not an id: both outcomes of e1 take a slot


def test_a_click_and_a_purchase_of_one_event_both_count_and_each_counts_once(
    client_factory: Callable[..., TestClient],
) -> None:
    """The red-team repro: the same event_id for a click and a purchase outcome used to drop the second one."""
    client = client_factory()
    purchase = {**VERSIONS, "arm": "stable", "task": "purchase"}

    def purchases() -> float:
        return sum(
            sample(client, "fusionrank_feedback_events_total", **purchase, bucket=f"{b:02d}") or 0.0 for b in range(10)
        )

    click, bought = event("served-1"), event("served-1", task="purchase", prediction=0.02)
    first = client.post("/v1/feedback", json={"events": [click]}).json()
    later = client.post("/v1/feedback", json={"events": [bought]}).json()  # e.g. 3 days later
    assert first == later == {"accepted": 1, "rejected": [], "duplicates": []}
    assert _counted(client) == 1 and purchases() == 1
    # Both outcomes in one batch are two events, not a duplicate ...
    both = client.post("/v1/feedback", json={"events": [event("served-2"), event("served-2", task="purchase")]})
    assert both.json() == {"accepted": 2, "rejected": [], "duplicates": []}
    assert _counted(client) == 2 and purchases() == 2
    # ... while a true duplicate (same event_id and task) is still counted once, across batches and within one.
    retry = client.post("/v1/feedback", json={"events": [bought, click]}).json()
    assert retry == {"accepted": 0, "rejected": [], "duplicates": [0, 1]}
    twice = client.post("/v1/feedback", json={"events": [event("served-3"), event("served-3")]}).json()
    assert twice["accepted"] == 1 and [(r["index"], r["field"]) for r in twice["rejected"]] == [(1, "event_id")]
    assert _counted(client) == 3 and purchases() == 2
    assert sample(client, "fusionrank_feedback_duplicate_events_total") == 2


def test_dedup_can_be_turned_off(client_factory: Callable[..., TestClient]) -> None:
    client = client_factory(feedback_dedup_ids=0)
    batch = {"events": [event("same")]}
    assert client.post("/v1/feedback", json=batch).json()["accepted"] == 1
    assert client.post("/v1/feedback", json=batch).json()["accepted"] == 1


def test_events_naming_an_unloadable_calibration_reject_only_themselves(
    client_factory: Callable[..., TestClient], store_copy: tuple[Path, Path], caplog: pytest.LogCaptureFixture,
) -> None:
    """A calibration file nested 100000 deep (RecursionError in the JSON parser), one that is not JSON and one
    outside the numeric bounds: the events naming them are rejected with the reason, the others counted, no 500."""
    store, policies = store_copy
    calibrations = store / "demo_ranker" / "1" / "calibration"
    (calibrations / "2.json").write_text('{"a": ' * 100_000 + "1" + "}" * 100_000)
    (calibrations / "3.json").write_text('{"schema_version": 1, "version": "3", ')
    data = json.loads((calibrations / "1.json").read_text())
    data["version"] = "4"
    data["tasks"]["click"]["calibrator"]["a"] = 1e7
    (calibrations / "4.json").write_text(json.dumps(data))
    client = client_factory(store=store, policies=policies)
    batch = {"events": [
        event("ok-1"), event("deep", calibration_version="2"), event("ok-2", task="purchase"),
        event("cut", calibration_version="3"), event("big", calibration_version="4"), event("ok-3"),
    ]}
    for attempt in range(2):  # the second time from the catalog's remembered misses
        response = client.post("/v1/feedback", json=batch)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["accepted"] == (3 if attempt == 0 else 0)
        assert answer["duplicates"] == ([] if attempt == 0 else [0, 2, 5])
        rejected = {r["index"]: r for r in answer["rejected"]}
        assert sorted(rejected) == [1, 3, 4]
        assert {r["field"] for r in rejected.values()} == {"calibration_version"}
        assert "demo_ranker/1/2" in rejected[1]["reason"] and "unusable" in rejected[1]["reason"]
        assert "invalid JSON" in rejected[3]["reason"]
        assert "1e+06" in rejected[4]["reason"]
        assert all("fix" in r["reason"] for r in rejected.values())
    assert _counted(client) == 2  # ok-1 and ok-3 (click); ok-2 is a purchase
    assert sample(client, "fusionrank_feedback_rejected_total", field="calibration_version") == 6
    assert any("demo_ranker/1/2" in r.getMessage() for r in caplog.records)
