"""Shadow ranking: the comparison figures, and the shortcut that reuses the served predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from app.control.loader import BundleCache
from app.protocol.rows import decode_score_request
from app.serving.scorer import score
from app.serving.shadow import compare_rankings, shadow_rank
from tests.conftest import MODEL_STORE, POLICIES


def test_compare_rankings_overlap_shift_and_missing() -> None:
    served = np.array([0, 1, 2, 3])
    shadow = np.array([1, 0, 5, 2, 6])
    result = compare_rankings(served, shadow, candidates=7)
    assert result.overlap == 3 / 4  # shadow's top 4 = {1, 0, 5, 2}
    assert result.mean_rank_shift == pytest.approx((1 + 1 + 1) / 3)  # 0: 0->1, 1: 1->0, 2: 2->3
    assert result.missing == 1  # candidate 3
    same = compare_rankings(served, served, candidates=4)
    assert (same.overlap, same.mean_rank_shift, same.missing) == (1.0, 0.0, 0)
    assert compare_rankings(served[:0], served[:0], 4).overlap == 1.0
    assert compare_rankings(served[:0], served, 4).overlap == 0.0
    disjoint = compare_rankings(np.array([0]), np.array([1]), 2)
    assert (disjoint.overlap, disjoint.mean_rank_shift, disjoint.missing) == (0.0, None, 1)


@pytest.mark.parametrize("top_k", [None, 5])
def test_shadow_rank_equals_scoring_under_the_shadow_policy(sample_request: dict[str, Any], top_k: int | None) -> None:
    cache = BundleCache(MODEL_STORE, 1)
    active, shadow = (cache.bind(POLICIES / "home" / f"{v}.yaml") for v in ("1", "2"))
    assert shadow.bundle is active.bundle  # the shortcut applies: same bundle, same calibration
    sample_request["options"] = {"top_k": top_k}
    _, request = decode_score_request(orjson.dumps(sample_request), max_candidates=100)
    served = score(active, request)
    np.testing.assert_array_equal(shadow_rank(served, shadow, request), score(shadow, request).ranked)
    if top_k is None:  # the versions do rank differently (their top 5 happen to agree)
        assert not np.array_equal(served.ranked, score(shadow, request).ranked)


def test_shadow_on_another_bundle_scores_from_scratch(
    sample_request: dict[str, Any], store_copy: tuple[Path, Path]
) -> None:
    store, _ = store_copy
    active = BundleCache(MODEL_STORE, 1).bind(POLICIES / "home" / "1.yaml")
    shadow = BundleCache(store, 1).bind(POLICIES / "home" / "2.yaml")  # a separately loaded bundle
    _, request = decode_score_request(orjson.dumps(sample_request), max_candidates=100)
    np.testing.assert_array_equal(shadow_rank(score(active, request), shadow, request), score(shadow, request).ranked)
