"""`logs join --engine spark` equals the local join on the same served log and outcomes (to 1e-12)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.offline.logs import join_logs
from app.offline.logs.spark_join import join_on_spark
from tests.conftest import MODEL_STORE
from tests.offline.logs.helpers import scenario, write_outcomes_csv, write_served_log

pytestmark = pytest.mark.spark


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([("request_id", "ascending"), ("candidate_index", "ascending")])


def test_spark_and_local_joins_agree(spark: Any, tmp_path: Path, sample_request_body: dict[str, Any]) -> None:
    root = tmp_path / "log"
    t0 = write_served_log(root, sample_request_body, requests=2)
    events, _ = scenario(root, t0)
    outcomes = write_outcomes_csv(tmp_path / "outcomes.csv", events)
    as_of = t0 + timedelta(hours=2)
    local, local_summary = join_logs(root, outcomes, as_of, MODEL_STORE)
    out = tmp_path / "out" / "joined.parquet"
    remote_summary = join_on_spark(spark, root, outcomes, as_of, MODEL_STORE, out)
    assert [p.name for p in out.parent.iterdir()] == ["joined.parquet"]  # one whole file, no temporary left
    local, remote = _sorted(local), _sorted(pq.read_table(out))
    assert remote.schema == local.schema
    assert remote.schema.metadata == local.schema.metadata
    for name in local.column_names:
        a, b = local[name], remote[name]
        if pa.types.is_floating(a.type):
            x, y = a.to_numpy(zero_copy_only=False), b.to_numpy(zero_copy_only=False)
            np.testing.assert_allclose(y, x, rtol=0, atol=1e-12, err_msg=name)
            assert np.array_equal(np.isnan(x), np.isnan(y)), name
        else:
            assert a.to_pylist() == b.to_pylist(), name
    assert vars(local_summary) == vars(remote_summary)
