"""Snapshot loading: shadow pointers, reuse of loaded bundles, pointer files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.control import loader
from app.control.loader import BundleCache, load_snapshot
from app.control.pointers import read_pointer, write_pointer
from app.errors import ArtifactError, PolicyError
from tests.conftest import write_policy


def test_shadow_pointer_is_loaded_and_a_bad_one_is_reported(store_copy: tuple[Path, Path]) -> None:
    store, policies = store_copy
    (policies / "home" / "shadow").write_text("2\n")
    assert load_snapshot(store, policies).route("home").shadow == "2"
    (policies / "home" / "shadow").write_text("7\n")
    snapshot = load_snapshot(store, policies)
    assert snapshot.route("home").shadow is None
    assert any("shadow version '7'" in p for p in snapshot.problems)
    assert snapshot.route("home").active == "1"  # a bad shadow never takes the surface down


def test_loaded_bundles_are_reused_not_reloaded(store_copy: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    store, policies = store_copy
    first = load_snapshot(store, policies)
    created: list[Any] = []
    original = loader.ModelRunner

    def counting(*args: Any, **kwargs: Any) -> Any:
        created.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(loader, "ModelRunner", counting)
    second = load_snapshot(store, policies, reuse=first.bundles)
    assert created == []
    assert second.bundles["demo_ranker/1"] is first.bundles["demo_ranker/1"]
    load_snapshot(store, policies)
    assert len(created) == 1  # without `reuse`, the ONNX session is built again


def test_a_policy_naming_a_missing_model_or_calibration_names_the_policy(store_copy: tuple[Path, Path]) -> None:
    store, policies = store_copy
    for version, edit, field in (
        ("3", lambda p: p["model"].update(name="other_ranker"), "model"),
        ("4", lambda p: p.update(calibration_version="9"), "calibration_version"),
    ):
        path = write_policy(policies, version, edit)
        with pytest.raises(PolicyError) as info:
            BundleCache(store, 1).bind(path)
        assert info.value.path == str(path) and info.value.field == field
    assert "demo_ranker/1" in info.value.message or "['1']" in info.value.fix


def test_pointer_files_are_written_atomically_and_checked(tmp_path: Path) -> None:
    assert read_pointer(tmp_path, "active") is None
    write_pointer(tmp_path, "active", "3")
    assert (tmp_path / "active").read_text() == "3\n" and read_pointer(tmp_path, "active") == "3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["active"]  # no temporary file left behind
    (tmp_path / "active").write_text("../etc\n")
    with pytest.raises(ArtifactError, match="not a version name"):
        read_pointer(tmp_path, "active")
    (tmp_path / "active").write_text("")
    with pytest.raises(ArtifactError, match="no active-version pointer"):
        loader.read_active_version(tmp_path)
