"""File schemas: round trips, and the rejections a user would hit editing them by hand."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from app.artifacts import CalibrationFile, ModelManifest, PolicyFile
from tests.conftest import BUNDLE, POLICIES


def _manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((BUNDLE / "manifest.json").read_text())
    return data


def _calibration() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((BUNDLE / "calibration" / "1.json").read_text())
    return data


def _policy() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((POLICIES / "home" / "1.yaml").read_text())
    return data


@pytest.mark.parametrize(
    ("model", "load"), [(ModelManifest, _manifest), (CalibrationFile, _calibration), (PolicyFile, _policy)]
)
def test_round_trip_is_lossless(model: Any, load: Any) -> None:
    parsed = model.model_validate(load())
    again = model.model_validate(json.loads(parsed.model_dump_json(by_alias=True)))
    assert again == parsed


@pytest.mark.parametrize(("model", "load"), [(ModelManifest, _manifest), (CalibrationFile, _calibration),
                                             (PolicyFile, _policy)])
def test_unknown_keys_and_schema_versions_are_rejected(model: Any, load: Any) -> None:
    data = load()
    data["unexpected"] = 1
    with pytest.raises(ValidationError, match="unexpected"):
        model.model_validate(data)
    data = load()
    data["schema_version"] = 2
    with pytest.raises(ValidationError, match="schema_version"):
        model.model_validate(data)


def test_manifest_rejects_duplicate_tasks_and_features() -> None:
    data = _manifest()
    data["tasks"].append(dict(data["tasks"][0]))
    with pytest.raises(ValidationError, match="task names must be unique"):
        ModelManifest.model_validate(data)
    data = _manifest()
    data["features"]["numeric"].append({"name": data["features"]["categorical"][0]["name"], "default": 0.0})
    with pytest.raises(ValidationError, match="unique across numeric and categorical"):
        ModelManifest.model_validate(data)


@pytest.mark.parametrize("name", ["../evil", "/abs", ".hidden", "a/b", ""])
def test_names_cannot_escape_the_store(name: str) -> None:
    data = _manifest()
    data["version"] = name
    with pytest.raises(ValidationError, match="version"):
        ModelManifest.model_validate(data)


def test_calibration_rejects_non_monotone_tables_and_bad_edges() -> None:
    data = _calibration()
    data["tasks"]["click"]["calibrator"] = {"method": "isotonic", "x": [-3, -1, 1], "y": [0.01, 0.05, 0.04]}
    with pytest.raises(ValidationError, match="strictly increasing"):
        CalibrationFile.model_validate(data)
    data = _calibration()
    data["tasks"]["click"]["calibrator"] = {"method": "platt", "a": -1.0, "b": 0.0}
    with pytest.raises(ValidationError, match=r"-1.0 is not a finite number in \[1e-06, 1e\+06\]"):
        CalibrationFile.model_validate(data)
    data = _calibration()
    data["tasks"]["click"]["bucket_edges"] = [0.2, 0.1]
    with pytest.raises(ValidationError, match="bucket_edges"):
        CalibrationFile.model_validate(data)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: p["utility"][0].update(weight=float("nan")), "finite"),
        (lambda p: p["utility"][0].update(weight=float("inf")), "finite"),
        (lambda p: p["guardrails"][0].update(above=1.5), r"1.5 is not a finite number in \[0, 1\]"),
        (lambda p: p["guardrails"][0].update(attribute="eligible"), "exactly one of"),
        (lambda p: p["guardrails"][1].pop("equals"), "exactly one of"),
        (lambda p: p["governance"].pop("owner"), "owner"),
        (lambda p: p["governance"].update(change_note=""), "change_note"),
        (lambda p: p.pop("governance"), "governance"),
        (lambda p: p["utility"].append(dict(p["utility"][0])), "unique"),
        (lambda p: p["overrides"][0]["thresholds"].update(report_risk=2.0), r"\[0, 1\]"),
    ],
)
def test_policy_grammar_rejections_name_the_field(edit: Any, message: str) -> None:
    data = _policy()
    edit(data)
    with pytest.raises(ValidationError, match=message):
        PolicyFile.model_validate(data)


def test_knot_tables_need_a_minimum_gap() -> None:
    data = _calibration()
    data["tasks"]["click"]["calibrator"] = {"method": "isotonic", "x": [0.0, 1e-12], "y": [0.1, 0.2]}
    with pytest.raises(ValidationError, match="at least 1e-09 apart"):
        CalibrationFile.model_validate(data)
