"""Feature encoding: defaults, context broadcast, OOV index, and errors naming the candidate."""

from __future__ import annotations

import numpy as np
import pytest

from app.artifacts import CategoricalFeature, FeatureSchema, NumericFeature
from app.errors import InvalidRequest, ValueAt
from app.serving.columns import CandidateColumns, EncodedStrings
from app.serving.features import FeatureEncoder

SCHEMA = FeatureSchema(
    numeric=[NumericFeature(name="price", default=1.5), NumericFeature(name="quality")],
    categorical=[CategoricalFeature(name="kind", vocabulary=["a", "b"])],
)


def test_columns_follow_manifest_order_with_defaults_and_oov() -> None:
    encoded = FeatureEncoder(SCHEMA).encode(
        [{"price": 2, "quality": 0.5, "kind": "b"}, {"quality": -1.0, "kind": "zzz"}, {"quality": 3.0}],
        {},
    )
    np.testing.assert_array_equal(encoded.numeric, np.array([[2, 0.5], [1.5, -1.0], [1.5, 3.0]], np.float32))
    np.testing.assert_array_equal(encoded.categorical, np.array([[2], [0], [0]]))
    assert encoded.numeric.dtype == np.float32 and encoded.categorical.dtype == np.int64


def test_context_features_fill_candidates_that_lack_them() -> None:
    encoded = FeatureEncoder(SCHEMA).encode([{"kind": "a"}, {"quality": 9.0}], {"quality": 4.0, "kind": "b"})
    np.testing.assert_array_equal(encoded.numeric[:, 1], [4.0, 9.0])
    np.testing.assert_array_equal(encoded.categorical[:, 0], [1, 2])


@pytest.mark.parametrize(
    ("features", "field", "index"),
    [
        ([{"quality": 1.0}, {}], "candidates[1].features.quality", 1),  # required, missing
        ([{"quality": 1.0}, {"quality": None}], "candidates[1].features.quality", 1),
        ([{"quality": "1.0"}], "candidates[0].features.quality", 0),  # a string is not a number
        ([{"quality": True}], "candidates[0].features.quality", 0),
        ([{"quality": 1.0}, {"quality": float("inf")}], "candidates[1].features.quality", 1),
        ([{"quality": 1.0, "kind": 3}], "candidates[0].features.kind", 0),
        ([{"quality": 1.0, "kind": "a"}, {"quality": 1.0, "kind": True}], "candidates[1].features.kind", 1),
        ([{"quality": 1.0, "kind": "b"}, {"quality": 1.0, "kind": ["a"]}], "candidates[1].features.kind", 1),
        ([{"quality": 1.0, "kind": {"a": 1}}], "candidates[0].features.kind", 0),  # unhashable
    ],
)
def test_bad_values_name_field_and_candidate(features: list[dict[str, object]], field: str, index: int) -> None:
    with pytest.raises(InvalidRequest) as info:
        FeatureEncoder(SCHEMA).encode(features, {})
    detail = info.value.details[0]
    assert (detail.field, detail.candidate_index) == (field, index)
    assert detail.fix


def test_wrong_context_type_is_named() -> None:
    with pytest.raises(InvalidRequest, match=r"context\.features\.quality"):
        FeatureEncoder(SCHEMA).encode([{}], {"quality": "high"})


def test_every_bad_column_is_reported_at_once() -> None:
    with pytest.raises(InvalidRequest) as info:
        FeatureEncoder(SCHEMA).encode([{"price": "x", "kind": 1}], {})
    fields = [d.field for d in info.value.details]
    assert fields == [
        "candidates[0].features.price", "candidates[0].features.quality", "candidates[0].features.kind"
    ]
    assert "(and 2 more)" in info.value.message


@pytest.mark.parametrize("context", [{}, {"kind": "b"}, {"kind": "zzz"}])
def test_dictionary_encoded_strings_encode_like_a_list(context: dict[str, str]) -> None:
    """Arrow string columns arrive dictionary-encoded: same codes as the list, missing -> context -> OOV."""
    kinds = ["b", None, "zzz", "a", None, "a"]
    distinct = ["b", "zzz", "a"]
    encoded = EncodedStrings(codes=np.array([0, -1, 1, 2, -1, 2], dtype=np.intp), distinct=distinct)
    assert encoded.tolist() == kinds
    quality = np.arange(6, dtype=np.float64)
    as_list = FeatureEncoder(SCHEMA).encode(CandidateColumns(6, {"kind": kinds, "quality": quality}), context)
    as_codes = FeatureEncoder(SCHEMA).encode(CandidateColumns(6, {"kind": encoded, "quality": quality}), context)
    np.testing.assert_array_equal(as_codes.categorical, as_list.categorical)
    fallback = {"b": 2, "zzz": 0}.get(context.get("kind", ""), 0)
    np.testing.assert_array_equal(as_codes.categorical[:, 0], [2, fallback, 0, 1, fallback, 1])


def test_encoded_strings_where_numbers_are_due_are_named() -> None:
    strings = EncodedStrings(codes=np.array([-1, 0], dtype=np.intp), distinct=["high"])
    with pytest.raises(InvalidRequest) as caught:
        FeatureEncoder(SCHEMA).encode(CandidateColumns(2, {"quality": strings}), {"quality": 1.0})
    # serving locates the value; app.protocol names it by the body's path (`columns.quality[1]`)
    assert caught.value.details[0].value == ValueAt("features", "quality", 1)
    assert caught.value.details[0].candidate_index == 1
