"""A tiny demo log and its spec, shared by the training tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from app.offline.synthetic.log_file import demo_table

ROOT = Path(__file__).resolve().parents[2]
DEMO_SPEC = ROOT / "scripts" / "specs" / "demo.yaml"


def tiny_spec(**training: Any) -> dict[str, Any]:
    """The demo spec, trained small and fast (overrides go into `training`)."""
    spec: dict[str, Any] = yaml.safe_load(DEMO_SPEC.read_text())
    spec["training"].update(
        {
            "model": {"kind": "shared_bottom", "hidden": [16], "embedding_dim": 4},
            "epochs": 2,
            "batch_size": 128,
            "learning_rate": 0.01,
            "compare_losses": [],
            "shuffle_buffer": 2000,
            "read_batch_rows": 4096,
        }
    )
    spec["training"].update(training)
    return spec


def write_spec(path: Path, spec: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def tiny_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8000 impressions of the synthetic demo log, in Parquet row groups of 1000 rows."""
    path = tmp_path_factory.mktemp("log") / "demo.parquet"
    pq.write_table(demo_table(8000, seed=11), path, row_group_size=1000)
    return path
