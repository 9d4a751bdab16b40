"""A policy's cascade is bound, checked and dry-run with its first-stage bundle; errors name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.artifacts.loading import load_manifest, load_policy
from app.control import loader
from app.control.cascade_binding import _check_features, _scoring
from app.control.loader import BundleCache, load_snapshot
from app.control.warmup import GoldenBatch
from app.errors import ArtifactError, PolicyError
from app.protocol.rows import decode_score_request
from tests.cascade_helpers import cascade_policy, copy_bundle_as
from tests.conftest import BUNDLE


def _golden() -> GoldenBatch:
    return GoldenBatch(lambda body: decode_score_request(body, max_candidates=1_000_000)[1])


def test_a_cascade_policy_validates_and_its_dry_run_runs_the_first_stage(store_copy: tuple[Path, Path]) -> None:
    store, policies = store_copy
    copy_bundle_as(store, "demo_light")
    path = cascade_policy(policies, "3", top_n=25, task="click")
    binding, report = _golden().validate(path, BundleCache(store, 1), surface="home")
    assert binding.first_stage is not None and binding.first_stage.bundle.key == "demo_light/1"
    assert report.answered["sample context"] > 0
    assert binding.versions() == {"model": "demo_ranker", "model_version": "1", "calibration_version": "1",
                                  "policy_version": "3"}  # the triple; the first stage is part of the policy


@pytest.mark.parametrize(
    ("cascade", "field", "says"),
    [
        ({"model": {"name": "nope", "version": "1"}}, "cascade.model", "not in the model store"),
        ({"calibration_version": "9"}, "cascade.calibration_version", "does not exist"),
        ({"task": "dwell"}, "cascade.task", "not a task of first-stage model"),
        ({"top_n": 5}, "cascade.top_n", "below slate.top_k 20"),
    ],
)
def test_a_bad_cascade_is_refused_naming_the_field(
    store_copy: tuple[Path, Path], cascade: dict[str, Any], field: str, says: str
) -> None:
    store, policies = store_copy
    copy_bundle_as(store, "demo_light")
    path = cascade_policy(policies, "3", **cascade)
    with pytest.raises(PolicyError) as info:
        BundleCache(store, 1).bind(path)
    assert (info.value.field, info.value.path) == (field, str(path))
    assert says in info.value.message


@pytest.mark.parametrize("top_n", [0, 100_001])
def test_top_n_is_bounded_by_the_schema(store_copy: tuple[Path, Path], top_n: int) -> None:
    _, policies = store_copy
    path = cascade_policy(policies, "3", top_n=top_n)
    with pytest.raises(ArtifactError) as info:
        load_policy(path)
    assert "cascade.top_n" in str(info.value)


def test_the_first_stage_must_read_only_features_the_main_model_accepts(tmp_path: Path) -> None:
    main = load_manifest(BUNDLE)
    features = main.features
    extra = main.model_copy(update={"features": features.model_copy(update={
        "numeric": [*features.numeric, features.numeric[0].model_copy(update={"name": "secret_signal"})]})})
    with pytest.raises(PolicyError) as info:
        _check_features(extra, main, tmp_path / "3.yaml")
    assert info.value.field == "cascade.model" and "'secret_signal'" in info.value.message
    # user_activity is required by the main model: a first stage that defaults it is fine, the reverse is not
    required = features.numeric[2].model_copy(update={"default": None})  # item_quality, defaulted by main
    strict = main.model_copy(update={"features": features.model_copy(update={"numeric": [required]})})
    with pytest.raises(PolicyError, match="requires numeric feature 'item_quality'"):
        _check_features(strict, main, tmp_path / "3.yaml")
    _check_features(main.model_copy(update={"features": features.model_copy(update={"categorical": []})}), main,
                    tmp_path / "3.yaml")  # a subset is accepted


def test_scoring_by_utility_needs_every_utility_task_in_the_first_stage(tmp_path: Path) -> None:
    main = load_manifest(BUNDLE)
    policy = load_policy(Path(__file__).resolve().parents[2] / "policies" / "home" / "1.yaml")
    spec = {"model": {"name": "demo_light", "version": "1"}, "calibration_version": "1", "top_n": 25}
    with_cascade = policy.model_validate({**policy.to_yaml_dict(), "cascade": spec})
    light = main.model_copy(update={"tasks": main.tasks[:2]})  # click, purchase
    with pytest.raises(PolicyError) as info:
        _scoring(with_cascade.cascade, with_cascade, light, tmp_path / "3.yaml")  # type: ignore[arg-type]
    assert info.value.field == "cascade.task" and "['hide', 'report']" in info.value.message
    assert _scoring(with_cascade.cascade, with_cascade, main, tmp_path / "3.yaml")[1] is not None  # type: ignore[arg-type]


def test_the_first_stage_bundle_is_kept_and_reused_across_snapshots(
    store_copy: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, policies = store_copy
    copy_bundle_as(store, "demo_light")
    cascade_policy(policies, "3", task="click")
    (policies / "home" / "active").write_text("3\n")
    first = load_snapshot(store, policies)
    assert first.problems == () and "demo_light/1" in first.bundles
    created: list[object] = []
    original = loader.ModelRunner
    monkeypatch.setattr(loader, "ModelRunner", lambda *a, **k: created.append(a) or original(*a, **k))
    second = load_snapshot(store, policies, reuse=first.bundles)
    assert created == [] and second.bundles["demo_light/1"] is first.bundles["demo_light/1"]
    assert _golden().warm_up(second) == []


def test_a_policy_whose_first_stage_fails_is_not_served(store_copy: tuple[Path, Path]) -> None:
    store, policies = store_copy
    cascade_policy(policies, "3", task="click")  # demo_light/1 is not in the store
    (policies / "home" / "active").write_text("3\n")
    snapshot = load_snapshot(store, policies)
    assert "home" not in snapshot.surfaces  # never half a cascade, never a silent fallback
    assert any("cascade.model" in p for p in snapshot.problems)
