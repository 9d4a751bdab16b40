"""Loaders: each cross-reference failure raises an ArtifactError naming file, field and fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.artifacts import (
    check_calibration_for,
    check_policy_against,
    load_calibration,
    load_manifest,
    load_policy,
)
from app.errors import ArtifactError, PolicyError


def _edit_json(path: Path, edit: Any) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _edit_yaml(path: Path, edit: Any) -> None:
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data))


def test_shipped_bundle_loads_and_cross_checks(store_copy: tuple[Path, Path]) -> None:
    store, policies = store_copy
    manifest = load_manifest(store / "demo_ranker" / "1")
    path = store / "demo_ranker" / "1" / "calibration" / "1.json"
    calibration = load_calibration(path)
    check_calibration_for(calibration, manifest, path)
    policy_path = policies / "home" / "1.yaml"
    check_policy_against(load_policy(policy_path), manifest, calibration.version, policy_path)


def test_sha_mismatch_is_refused(store_copy: tuple[Path, Path]) -> None:
    bundle = store_copy[0] / "demo_ranker" / "1"
    with (bundle / "model.onnx").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ArtifactError) as info:
        load_manifest(bundle)
    assert "model_sha256" in str(info.value) and "manifest.json" in str(info.value)
    assert "re-export" in info.value.fix


def test_missing_model_file_is_refused(store_copy: tuple[Path, Path]) -> None:
    bundle = store_copy[0] / "demo_ranker" / "1"
    (bundle / "model.onnx").unlink()
    with pytest.raises(ArtifactError, match="model file is missing"):
        load_manifest(bundle)


def test_bundle_stored_under_the_wrong_version_is_refused(store_copy: tuple[Path, Path]) -> None:
    store = store_copy[0]
    (store / "demo_ranker" / "1").rename(store / "demo_ranker" / "2")
    with pytest.raises(ArtifactError, match="name/version"):
        load_manifest(store / "demo_ranker" / "2")


def test_schema_error_names_file_and_field(store_copy: tuple[Path, Path]) -> None:
    bundle = store_copy[0] / "demo_ranker" / "1"
    _edit_json(bundle / "manifest.json", lambda d: d["tasks"][0].update(polarity="sideways"))
    with pytest.raises(ArtifactError) as info:
        load_manifest(bundle)
    assert "manifest.json" in str(info.value)
    assert info.value.field == "tasks[0].polarity"


def test_invalid_json_names_the_line(store_copy: tuple[Path, Path]) -> None:
    path = store_copy[0] / "demo_ranker" / "1" / "manifest.json"
    path.write_text('{"schema_version": 1,\n  oops}')
    with pytest.raises(ArtifactError, match="line 2"):
        load_manifest(path.parent)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d.update(model=None), "model"),
        (lambda d: d["model"].update(version="9"), "model"),
        (lambda d: d["model"].update(sha256="0" * 64), "model"),
        (lambda d: d["tasks"].pop("report"), "tasks"),
        (lambda d: d["tasks"].update(extra=d["tasks"]["click"]), "tasks"),
        (lambda d: d["tasks"]["click"].update(segments=[{"feature": "nope", "values": {}}]),
         "tasks.click.segments[0].feature"),
        (lambda d: d["tasks"]["hide"].update(segments=[{"feature": "user_tenure", "values": {
            "new": {"a": 1.0, "b": -0.2, "count": 10}, "veteran": {"a": 1.0, "b": 0.1, "count": 10}}}]),
         "tasks.hide.segments[0].values"),
    ],
)
def test_calibration_for_another_model_is_refused(store_copy: tuple[Path, Path], edit: Any, field: str) -> None:
    bundle = store_copy[0] / "demo_ranker" / "1"
    path = bundle / "calibration" / "1.json"
    _edit_json(path, edit)
    with pytest.raises(ArtifactError) as info:
        check_calibration_for(load_calibration(path), load_manifest(bundle), path)
    assert info.value.field == field
    assert "1.json" in str(info.value)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda p: p["utility"][0].update(task="dwell"), "utility[0].task"),
        (lambda p: p["utility"][2].update(weight=2.0), "utility[2].weight"),  # hide is negative
        (lambda p: p["utility"][1].update(attribute="price_tag"), "utility[1].attribute"),
        (lambda p: p["utility"][1].update(attribute="creator_id"), "utility[1].attribute"),  # not a number
        (lambda p: p["guardrails"][0].update(task="dwell"), "guardrails[0].task"),
        (lambda p: p["guardrails"][1].update(attribute="is_safe"), "guardrails[1].attribute"),
        (lambda p: p["slate"]["max_per_value"][0].update(attribute="brand"), "slate.max_per_value[0].attribute"),
        (lambda p: p["overrides"][0]["weights"].update(nope=1.0), "overrides[0].weights.nope"),
        (lambda p: p["overrides"][0]["weights"].update(hide_penalty=1.0), "overrides[0].weights.hide_penalty"),
        (lambda p: p["overrides"][0]["thresholds"].update(not_eligible=0.5), "overrides[0].thresholds.not_eligible"),
        (lambda p: p["model"].update(version="2"), "model"),
        (lambda p: p.update(calibration_version="2"), "calibration_version"),
        (lambda p: p["governance"].update(approved_by=[]), "governance.approved_by"),
    ],
)
def test_policy_references_are_checked(store_copy: tuple[Path, Path], edit: Any, field: str) -> None:
    store, policies = store_copy
    path = policies / "home" / "1.yaml"
    _edit_yaml(path, edit)
    with pytest.raises(PolicyError) as info:
        check_policy_against(load_policy(path), load_manifest(store / "demo_ranker" / "1"), "1", path)
    assert info.value.field == field
    assert "1.yaml" in str(info.value) and info.value.fix


def test_policy_stored_under_another_surface_is_refused(store_copy: tuple[Path, Path]) -> None:
    policies = store_copy[1]
    (policies / "home").rename(policies / "search")
    with pytest.raises(PolicyError, match="surface/version"):
        load_policy(policies / "search" / "1.yaml")


def test_yaml_syntax_error_is_an_artifact_error(store_copy: tuple[Path, Path]) -> None:
    path = store_copy[1] / "home" / "1.yaml"
    path.write_text("utility: [unclosed\n")
    with pytest.raises(ArtifactError, match="invalid YAML"):
        load_policy(path)
