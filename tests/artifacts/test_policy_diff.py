"""`diff_policies`: items matched by name, each change as old -> new."""

from __future__ import annotations

from typing import Any

import yaml

from app.artifacts import PolicyFile
from app.artifacts.diff import diff_policies
from tests.conftest import POLICIES


def _policy(edit: Any = None) -> PolicyFile:
    data = yaml.safe_load((POLICIES / "home" / "1.yaml").read_text())
    if edit is not None:
        edit(data)
    return PolicyFile.model_validate(data)


def _rows(old: PolicyFile, new: PolicyFile) -> list[tuple[str, str, str, str, str, str]]:
    return [(d.section, d.item, d.field, d.change, d.old, d.new) for d in diff_policies(old, new)]


def test_identical_and_reordered_policies_have_no_difference() -> None:
    assert diff_policies(_policy(), _policy()) == []
    reordered = _policy(lambda p: p.update(utility=p["utility"][::-1], guardrails=p["guardrails"][::-1]))
    assert diff_policies(_policy(), reordered) == []


def test_each_section_shows_what_changed() -> None:
    def edit(p: dict[str, Any]) -> None:
        p["utility"][2]["weight"] = -3.5
        p["utility"].append({"name": "click_again", "task": "click", "weight": 0.5})
        del p["utility"][1]
        p["guardrails"][0]["above"] = 0.004
        p["slate"]["top_k"] = 10
        p["slate"]["max_matching"][0]["max"] = 1
        p["overrides"][0]["weights"]["hide_penalty"] = -6.0
        p["overrides"][0]["when"]["user_segment"] = "returning"
        p["attributes"]["margin"] = "number"
        p["governance"]["approved_by"] = ["x", "y"]

    rows = _rows(_policy(), _policy(edit))
    assert ("utility", "hide_penalty", "weight", "changed", "-2.0", "-3.5") in rows
    assert ("utility", "purchase_margin", "", "removed", "task=purchase weight=0.05 attribute=margin", "-") in rows
    assert ("utility", "click_again", "", "added", "-", "task=click weight=0.5") in rows
    assert ("guardrails", "report_risk", "above", "changed", "0.002", "0.004") in rows
    assert ("slate", "top_k", "value", "changed", "20", "10") in rows
    assert ("slate", "sponsored_cap", "max", "changed", "3", "1") in rows
    assert ("overrides", "new_users_safer", "weights.hide_penalty", "changed", "-4.0", "-6.0") in rows
    assert ("overrides", "new_users_safer", "when.user_segment", "changed", "new", "returning") in rows
    assert ("governance", "governance", "approved_by", "changed", "[demo-reviewer]", "[x, y]") in rows
    assert len(rows) == 9  # the unchanged `attributes.margin` is not listed
    sections = [r[0] for r in rows]
    assert sections == sorted(sections, key=["utility", "guardrails", "slate", "overrides", "governance"].index)


def test_a_guardrail_changing_form_shows_each_field() -> None:
    new = _policy(lambda p: p["guardrails"][1].update(equals=None, **{"in": [False]}))
    rows = _rows(_policy(), new)
    assert ("guardrails", "not_eligible", "equals", "removed", "false", "-") in rows
    assert ("guardrails", "not_eligible", "in", "added", "-", "[false]") in rows
