"""Slate rules and overrides of both shipped policy versions, end to end on the golden batch."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from tests.conftest import POLICIES


def _policy(version: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((POLICIES / "home" / f"{version}.yaml").read_text())
    return data


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize("segment", ["regular", "new"])
def test_answers_obey_the_slate_rules_and_overrides_of_the_pinned_version(
    client: TestClient, sample_request: dict[str, Any], version: str, segment: str
) -> None:
    policy = _policy(version)
    slate = policy["slate"]
    cap = slate["max_matching"][0]
    per_creator = slate["max_per_value"][0]
    sample_request.update(policy_version=version, options={"debug": True})
    sample_request["context"]["attributes"] = {"user_segment": segment}
    body = client.post("/v1/score", json=sample_request).json()
    attributes = {c["id"]: c["attributes"] for c in sample_request["candidates"]}
    answered = [c["id"] for c in body["candidates"]]

    assert body["versions"]["policy_version"] == version
    assert len(answered) == slate["top_k"]
    assert max(Counter(attributes[i]["creator_id"] for i in answered).values()) <= per_creator["max"]
    assert sum(attributes[i]["sponsored"] is cap["equals"] for i in answered) <= cap["max"]
    dropped = {f["id"]: f["rule"] for f in body["filtered"] if f["stage"] == "slate"}
    # Every drop is one of the two rules; on the shipped golden batch the sponsored cap always fires,
    # and the creator cap too for the default context (which rule fires depends on the ranking).
    assert cap["name"] in dropped.values() and set(dropped.values()) <= {per_creator["name"], cap["name"]}
    if segment == "regular":
        assert per_creator["name"] in dropped.values()
    assert all(attributes[i]["sponsored"] for i, rule in dropped.items() if rule == cap["name"])

    override = policy["overrides"][0]
    hide = policy["utility"][2]
    weights = {t["name"]: t["weight"] for t in body["candidates"][0]["debug"]["terms"]}
    report_guard = policy["guardrails"][0]
    by_report = [f for f in body["filtered"] if f["rule"] == report_guard["name"]]
    if segment == "new":
        assert body["overrides"] == [override["name"]]
        assert weights[hide["name"]] == override["weights"][hide["name"]]
        # removed only because the override lowers the threshold: base threshold not exceeded
        assert by_report
        for item in by_report:
            p_report = item["debug"]["terms"][3]["prediction"]
            assert override["thresholds"][report_guard["name"]] < p_report <= report_guard["above"]
    else:
        assert body["overrides"] == [] and by_report == []
        assert weights[hide["name"]] == hide["weight"]
