"""Small synthetic logs for the tuning tests (written once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.offline.tuning.demo_logs import synthetic_log_columns, write_log

DEMO_TASKS = ("click", "purchase", "hide", "report")


@pytest.fixture(scope="session")
def small_log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """600 groups x 30 candidates x 5 tasks."""
    return write_log(tmp_path_factory.mktemp("logs") / "small.parquet", synthetic_log_columns(600, 30, seed=3))


@pytest.fixture(scope="session")
def demo_shaped_log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 groups x 25 candidates with the demo model's tasks and the demo policy's attributes."""
    return write_log(tmp_path_factory.mktemp("logs") / "demo_shaped.parquet",
                     synthetic_log_columns(300, 25, DEMO_TASKS, seed=5))
