"""A policy's `monitoring` section: bands and mix properties are checked against the policy's own slate rules
and attributes, and every refusal names the file, the field and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.artifacts.mix_bands import MAX_MIX_PROPERTIES
from app.control.loader import BundleCache
from app.control.warmup import GoldenBatch
from app.errors import PolicyError
from app.protocol.rows import decode_score_request
from tests.conftest import write_policy

GOLDEN = GoldenBatch(lambda body: decode_score_request(body, max_candidates=1_000_000)[1])


def _bands(*bands: dict[str, Any], properties: list[dict[str, Any]] | None = None) -> Any:
    def edit(policy: dict[str, Any]) -> None:
        policy["monitoring"] = {"mix_bands": list(bands), "mix_properties": properties or []}

    return edit


FRESH = {"name": "fresh", "attribute": "sponsored", "equals": False}


@pytest.mark.parametrize(
    ("edit", "where", "words"),
    [
        (_bands({"rule": "creator_cap", "max": 0.5}), "monitoring.mix_bands[0].rule", "not a slate rule"),
        (_bands({"rule": "sponsored_cap"}), "monitoring.mix_bands[0]", "needs `min` and/or `max`"),
        (_bands({"rule": "sponsored_cap", "min": 0.4, "max": 0.2}), "monitoring.mix_bands[0]", "min 0.4 > max 0.2"),
        (_bands({"rule": "sponsored_cap", "max": 1.5}), "monitoring.mix_bands[0].max", "between 0 and 1"),
        (_bands({"rule": "sponsored_cap", "max": 0.2}, {"rule": "sponsored_cap", "min": 0.1}),
         "monitoring.mix_bands[1].rule", "has two bands"),
        (_bands(properties=[{**FRESH, "attribute": "is_new"}]), "monitoring.mix_properties[0].attribute",
         "not declared in `attributes`"),
        (_bands(properties=[{**FRESH, "name": "sponsored_cap"}]), "monitoring.mix_properties[0].name",
         "already a slate or ranking rule"),
        (_bands(properties=[{**FRESH, "equals": 1e301}]), "monitoring.mix_properties[0].equals", "finite number"),
        (_bands(properties=[{**FRESH, "equals": "no"}]), "monitoring.mix_properties[0].equals",
         "'no' is a string, attribute 'sponsored' is declared boolean: it would never match"),
        (_bands(properties=[{**FRESH, "name": f"p{i}"} for i in range(MAX_MIX_PROPERTIES + 1)]),
         "monitoring.mix_properties", f"at most {MAX_MIX_PROPERTIES}"),
    ],
)
def test_each_refusal_names_the_field(store_copy: tuple[Path, Path], edit: Any, where: str, words: str) -> None:
    store, policies = store_copy
    path = write_policy(policies, "9", edit)
    with pytest.raises(PolicyError) as info:
        GOLDEN.validate(path, BundleCache(store, 1))
    error = info.value
    assert "9.yaml" in error.message and error.fix
    assert where in error.message and words in error.message, error.message


def test_a_band_on_a_declared_property_is_served(store_copy: tuple[Path, Path]) -> None:
    store, policies = store_copy
    path = write_policy(policies, "9", _bands({"rule": "fresh", "min": 0.1}, {"rule": "creator_diversity", "min": 0.5},
                                              properties=[FRESH]))
    GOLDEN.validate(path, BundleCache(store, 1))


def test_policy_diff_shows_band_and_property_changes() -> None:
    import yaml

    from app.artifacts.diff import diff_policies
    from app.artifacts.policy import PolicyFile
    from tests.conftest import POLICIES

    data = yaml.safe_load((POLICIES / "home" / "1.yaml").read_text())
    old = PolicyFile.model_validate(data)
    _bands({"rule": "sponsored_cap", "max": 0.2}, properties=[FRESH])(data)
    new = PolicyFile.model_validate(data)
    changes = {(d.section, d.item, d.change, d.new) for d in diff_policies(old, new)}
    assert changes == {("monitoring", "fresh", "added", "property=sponsored = false"),
                       ("monitoring", "band sponsored_cap", "added", "min=- max=0.2")}
    data["monitoring"]["mix_bands"][0]["max"] = 0.25
    changed = diff_policies(new, PolicyFile.model_validate(data))
    assert [(d.item, d.field, d.old, d.new) for d in changed] == [("band sponsored_cap", "max", "0.2", "0.25")]
