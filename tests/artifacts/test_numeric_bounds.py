"""The documented numeric bounds of policy and calibration files (app/artifacts/bounds.py): each refusal names
the field and the fix, every shipped file lies inside them, and a legal file cannot produce a non-finite number."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from app.artifacts import CalibrationFile, PolicyFile
from app.artifacts.bounds import MAX_ATTRIBUTE_MAGNITUDE, MAX_BUCKET_EDGES, MAX_KNOTS, MAX_WEIGHT
from app.artifacts.policy import utility_bound
from app.serving.calibration import CalibrationSet
from tests.conftest import BUNDLE, POLICIES, ROOT


def _calibration() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((BUNDLE / "calibration" / "1.json").read_text())
    return data


def _policy() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((POLICIES / "home" / "1.yaml").read_text())
    return data


def _click(data: dict[str, Any]) -> dict[str, Any]:
    task: dict[str, Any] = data["tasks"]["click"]
    return task


def _segment(data: dict[str, Any]) -> dict[str, Any]:
    segment: dict[str, Any] = _click(data)["segments"][0]
    return segment


def _first_value(data: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = next(iter(_segment(data)["values"].values()))
    return value


def _edges(n: int) -> dict[str, Any]:
    edges = [(i + 1) / (n + 1) for i in range(n)]
    return {"bucket_edges": edges, "reference": {"fractions": [1.0 / (n + 1)] * (n + 1)}}


@pytest.mark.parametrize(
    ("edit", "field", "words"),
    [
        (lambda d: _click(d)["calibrator"].update(a=1e7), "tasks.click.calibrator.platt.a", "refit"),
        (lambda d: _click(d)["calibrator"].update(a=0.0), "tasks.click.calibrator.platt.a", "[1e-06, 1e+06]"),
        (lambda d: _click(d)["calibrator"].update(b=-1e7), "tasks.click.calibrator.platt.b", "refit"),
        (lambda d: _click(d)["calibrator"].update(b=float("nan")), "tasks.click.calibrator.platt.b", "finite"),
        (lambda d: _click(d).update(calibrator={"method": "temperature", "temperature": 1e-9}),
         "tasks.click.calibrator.temperature.temperature", "refit"),
        (lambda d: _click(d).update(calibrator={"method": "temperature", "temperature": float("inf")}),
         "tasks.click.calibrator.temperature.temperature", "finite"),
        (lambda d: _click(d).update(calibrator={"method": "isotonic", "x": [-1e7, 0.0], "y": [0.1, 0.2]}),
         "tasks.click.calibrator.isotonic.x.0", "[-1e+06, 1e+06]"),
        (lambda d: _click(d).update(calibrator={"method": "histogram", "x": [0.0, 1e300], "y": [0.1, 0.2]}),
         "tasks.click.calibrator.histogram.x.1", "refit"),
        (lambda d: _click(d).update(calibrator={
            "method": "isotonic", "x": [i * 1e-3 for i in range(MAX_KNOTS + 1)],
            "y": [0.1 + 0.8 * i / (MAX_KNOTS + 1) for i in range(MAX_KNOTS + 1)]}),
         "tasks.click.calibrator.isotonic.x", f"at most {MAX_KNOTS}"),
        (lambda d: _first_value(d).update(a=2e6), "tasks.click.segments.0.values", "refit"),
        (lambda d: _first_value(d).update(b=float("-inf")), "tasks.click.segments.0.values", "finite"),
        (lambda d: _first_value(d).update(count=2**64), "tasks.click.segments.0.values", "count"),
        (lambda d: _segment(d).update(shrinkage_prior=1e13), "tasks.click.segments.0.shrinkage_prior", "1e+12"),
        (lambda d: _segment(d).update(shrinkage_prior=-1.0), "tasks.click.segments.0.shrinkage_prior",
         "pseudo-count"),
        (lambda d: _click(d).update(_edges(MAX_BUCKET_EDGES + 1)), "tasks.click.bucket_edges",
         f"at most {MAX_BUCKET_EDGES}"),
        (lambda d: _click(d).update(bucket_edges=[0.5, 1.5]), "tasks.click", "inside (0, 1)"),
        (lambda d: _click(d).update(bucket_edges=[0.5], reference={"fractions": [1.5, -0.5]}),
         "tasks.click.reference", "lie in [0, 1]"),
    ],
)
def test_calibration_parameters_are_finite_and_bounded(edit: Any, field: str, words: str) -> None:
    data = _calibration()
    edit(data)
    with pytest.raises(ValidationError) as info:
        CalibrationFile.model_validate(data)
    text = str(info.value)
    assert field in text and words in text


def test_a_legal_calibration_at_its_bounds_stays_finite_and_monotone_on_extreme_logits() -> None:
    data = _calibration()
    tasks = data["tasks"]
    tasks["click"]["calibrator"] = {"method": "platt", "a": 1e6, "b": -1e6}
    tasks["purchase"]["calibrator"] = {"method": "temperature", "temperature": 1e-6}
    tasks["hide"]["calibrator"] = {"method": "isotonic", "x": [-1e6, -1e6 + 1e-9, 1e6], "y": [1e-300, 1e-200, 0.5]}
    tasks["report"]["calibrator"] = {"method": "histogram", "x": [-1e6, 1e6], "y": [0.5, 1 - 1e-16]}
    for task in tasks.values():
        for segment in task["segments"]:
            for i, value in enumerate(segment["values"].values()):
                value.update(a=1e6 if i % 2 else 1e-6, b=1e6 if i % 3 else -1e6)
    calibration = CalibrationFile.model_validate(data)
    from app.artifacts.loading import load_manifest

    compiled = CalibrationSet(calibration, load_manifest(BUNDLE))
    f32 = float(np.finfo(np.float32).max)
    z = np.array([-f32, -1e30, -1e6, -1.0, 0.0, 1e-30, 1.0, 1e6, 1e30, f32], dtype=np.float32)
    logits = np.repeat(z[:, None], 4, axis=1)
    vocabulary_sizes = [len(f.vocabulary) for f in load_manifest(BUNDLE).features.categorical]
    for code in range(max(vocabulary_sizes) + 1):  # every segment value, and out-of-vocabulary (0)
        categorical = np.array([[min(code, size) for size in vocabulary_sizes]] * len(z), dtype=np.int64)
        p = compiled.apply(logits, categorical)
        assert np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
        assert (np.diff(p, axis=0) >= 0).all()  # monotone in the logit, within a segment


def test_the_utility_bound_is_the_worst_case_over_terms_and_overrides() -> None:
    policy = PolicyFile.model_validate(_policy())
    # click 1, purchase_margin 0.05 x 1e300, hide -2 (override -4), report -20
    assert utility_bound(policy.utility, policy.overrides) == pytest.approx(1 + 0.05e300 + 4 + 20)
    data = _policy()
    data["utility"] = [
        {"name": f"v{i}", "task": "purchase", "weight": MAX_WEIGHT / 2, "attribute": "margin"} for i in range(300)
    ]
    data["overrides"] = []
    # 300 x 5e5 x 1e300 = 1.5e308 < 1.8e308: legal; an override doubling one weight is still legal, ...
    PolicyFile.model_validate(data)
    data["overrides"] = [{"name": "boost", "when": {"user_segment": "new"},
                          "weights": {f"v{i}": MAX_WEIGHT for i in range(100)}}]
    # ... doubling a hundred of them reaches 2e308: refused, at `overrides`, naming the term and the override
    with pytest.raises(ValidationError) as info:
        PolicyFile.model_validate(data)
    error = info.value.errors()[0]
    assert error["loc"] == ("overrides",)
    assert "override 'boost'" in error["msg"] and "utility[" in error["msg"] and "lower the weights" in error["msg"]
    assert f"{MAX_ATTRIBUTE_MAGNITUDE:g}" in error["msg"]


@pytest.mark.parametrize("rule", ["non_finite_prediction", "non_finite_utility"])
def test_a_policy_cannot_name_a_rule_after_the_services_own(rule: str) -> None:
    data = _policy()
    data["guardrails"][0]["name"] = rule
    with pytest.raises(ValidationError, match=f"guardrail name '{rule}' is the service's own filter rule"):
        PolicyFile.model_validate(data)
    data = _policy()
    data["slate"]["max_matching"][0]["name"] = rule
    with pytest.raises(ValidationError, match="rename the slate rule"):
        PolicyFile.model_validate(data)


def _shipped(pattern: str, is_kind: Any) -> list[Path]:
    """Every file of one kind under the folders the project ships (policies, model store, docs, test fixtures)."""
    files = (p for folder in ("policies", "model_store", "docs", "tests") for p in (ROOT / folder).glob(pattern))
    load = yaml.safe_load if pattern.endswith("yaml") else json.loads

    def kind(path: Path) -> bool:
        try:
            return bool(is_kind(load(path.read_text())))
        except (yaml.YAMLError, ValueError):  # other files (multi-document YAML, templates): not artifacts
            return False

    return sorted(p for p in files if kind(p))


SHIPPED_POLICIES = _shipped("**/*.yaml", lambda d: isinstance(d, dict) and "utility" in d)
SHIPPED_CALIBRATIONS = _shipped("**/*.json", lambda d: isinstance(d, dict) and isinstance(d.get("tasks"), dict))


def test_every_shipped_policy_and_calibration_is_checked() -> None:
    names = {str(p.relative_to(ROOT)) for p in SHIPPED_POLICIES + SHIPPED_CALIBRATIONS}
    assert {"policies/home/1.yaml", "policies/home/2.yaml", "docs/examples/movielens/movies/1.yaml",
            "model_store/demo_ranker/1/calibration/1.json", "tests/fixtures/calibration_report/calibration.json",
            } <= names


@pytest.mark.parametrize("path", SHIPPED_POLICIES, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_policies_lie_inside_the_bounds(path: Path) -> None:
    PolicyFile.model_validate(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("path", SHIPPED_CALIBRATIONS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_calibrations_lie_inside_the_bounds(path: Path) -> None:
    CalibrationFile.model_validate(json.loads(path.read_text()))
