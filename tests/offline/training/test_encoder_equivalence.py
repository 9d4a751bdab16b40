"""Training and serving turn the same raw rows into the same model inputs (no training/serving skew).

Training encodes a record batch with `encoding.encode`; `/v1/score` encodes JSON candidates with the
bundle's `FeatureEncoder`. On the same rows — with nulls in features that have a default, values
never seen in training, null categories, and user features sent once in the request context — both
give bit-identical float32 / int64 matrices.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.errors import InvalidRequest
from app.offline.training.encoding import EncodedRows, encode, feature_schema, fit_encoding
from app.offline.training.spec import DatasetSpec, TrainSpec
from app.offline.training.tabular import TableSource
from app.serving.features import FeatureEncoder
from tests.offline.conftest import tiny_spec

USER = ("user_activity", "user_age_days", "user_tenure", "device")
ROWS = 3000


def _with_gaps(table: pa.Table) -> pa.Table:
    """Nulls in features with a default and in categories; categories unseen in training."""
    n = table.num_rows
    index = np.arange(n)

    def replace(table: pa.Table, name: str, column: pa.Array) -> pa.Table:
        return table.set_column(table.schema.get_field_index(name), name, column)

    for name, every in (("item_price", 7), ("item_quality", 5), ("affinity", 9)):
        values = table.column(name).to_numpy()
        table = replace(table, name, pa.array(values, mask=index % every == 0))
    item_type = np.array(table.column("item_type").to_pylist(), dtype=object)
    item_type[index == 3] = "rare"  # one value, too rare to enter the vocabulary (min_count below)
    item_type[index % 13 == 0] = None
    table = replace(table, "item_type", pa.array(item_type.tolist(), pa.string()))
    category = np.array(table.column("item_category").to_pylist(), dtype=object)
    category[index % 17 == 0] = None
    return replace(table, "item_category", pa.array(category.tolist(), pa.string()))


@pytest.fixture
def encoded(tiny_log: Path, tmp_path: Path) -> tuple[DatasetSpec, FeatureEncoder, EncodedRows, pa.Table]:
    path = tmp_path / "gaps.parquet"
    pq.write_table(_with_gaps(pq.read_table(tiny_log)), path)
    spec = TrainSpec.model_validate(tiny_spec()).dataset.model_copy(update={"min_count": 2})
    source = TableSource.open(path, spec, batch_rows=1000)  # several batches: vocabularies differ per batch
    fitted = fit_encoding(source)
    rows = EncodedRows.concat([encode(batch, spec, fitted, p) for p, batch in source.batches()])
    table = pq.read_table(path).slice(0, ROWS)
    # The service's encoder as the exported bundle declares it (a feature without default is required).
    return spec, FeatureEncoder(feature_schema(spec, fitted, training=False)), rows.slice(0, ROWS), table


def _candidates(table: pa.Table, spec: DatasetSpec, skip: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """JSON candidates as a client sends them: a null value is simply not sent."""
    names = [f.name for f in spec.numeric] + list(spec.categorical)
    columns = {name: table.column(name).to_pylist() for name in names if name not in skip}
    return [{k: v[i] for k, v in columns.items() if v[i] is not None} for i in range(table.num_rows)]


def test_json_candidates_encode_to_the_training_matrices(encoded: Any) -> None:
    spec, serving, rows, table = encoded
    missing = np.isnan(table.column("item_price").to_numpy(zero_copy_only=False))
    unknown = np.array([v == "rare" for v in table.column("item_type").to_pylist()])
    assert missing.any() and unknown.any()  # the cases this test is about are present
    served = serving.encode(_candidates(table, spec), {})
    assert served.numeric.dtype == rows.numeric.dtype == np.float32
    assert served.categorical.dtype == rows.categorical.dtype == np.int64
    np.testing.assert_array_equal(served.numeric, rows.numeric)
    np.testing.assert_array_equal(served.categorical, rows.categorical)
    price = [f.name for f in spec.numeric].index("item_price")
    assert np.all(rows.numeric[missing, price] == 0.0)  # the spec's default, on both sides
    item_type = list(spec.categorical).index("item_type")
    assert np.all(rows.categorical[unknown, item_type] == 0)  # out of vocabulary


def test_user_features_sent_in_the_context_encode_like_per_row_values(encoded: Any) -> None:
    spec, serving, rows, table = encoded
    groups = table.column("request_id").to_numpy()
    checked = 0
    for group in np.unique(groups)[:40].tolist():
        at = np.flatnonzero(groups == group)
        part = table.take(pa.array(at))
        first = {name: part.column(name)[0].as_py() for name in USER}
        if any(part.column(name).to_pylist() != [first[name]] * len(at) for name in USER):
            continue  # the context carries one value per request
        served = serving.encode(_candidates(part, spec, skip=USER), first)
        np.testing.assert_array_equal(served.numeric, rows.numeric[at])
        np.testing.assert_array_equal(served.categorical, rows.categorical[at])
        checked += 1
    assert checked >= 20


def test_a_required_feature_missing_is_filled_in_training_and_refused_in_serving(
    tiny_log: Path, tmp_path: Path
) -> None:
    table = pq.read_table(tiny_log)
    activity = table.column("user_activity").to_numpy().copy()
    gone = np.arange(table.num_rows) % 4 == 1
    table = table.set_column(
        table.schema.get_field_index("user_activity"), "user_activity", pa.array(activity, mask=gone)
    )
    path = tmp_path / "required.parquet"
    pq.write_table(table, path)
    spec = TrainSpec.model_validate(tiny_spec()).dataset
    source = TableSource.open(path, spec)
    fitted = fit_encoding(source)
    every = EncodedRows.concat([encode(batch, spec, fitted, p) for p, batch in source.batches()])
    rows = every.slice(0, 50)
    j = [f.name for f in spec.numeric].index("user_activity")
    fill = fitted.numeric_fill[j]  # the train split's mean of the values present
    assert fill == pytest.approx(activity[~gone & (every.split == 0)].astype(np.float64).mean(), rel=1e-9)
    np.testing.assert_array_equal(rows.numeric[gone[:50], j], np.float32(fill))
    serving = FeatureEncoder(feature_schema(spec, fitted, training=False))
    candidates = _candidates(table.slice(0, 50), spec)
    with pytest.raises(InvalidRequest, match=r"candidates\[1\]\.features\.user_activity"):
        serving.encode(candidates, {})
    # The serving side takes the value from the context; sent the training fill, it agrees again.
    served = serving.encode(candidates, {"user_activity": fill})
    np.testing.assert_array_equal(served.numeric, rows.numeric)
    np.testing.assert_array_equal(served.categorical, rows.categorical)
