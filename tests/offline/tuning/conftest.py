"""Small synthetic logs for the tuning tests (written once per session)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


@pytest.fixture(scope="session")
def uneven_log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """100 requests x 20 candidates whose hide levels differ far more between requests than inside one
    (as MovieLens users do): the room kept for the held-out check is wider than the whole trade-off."""
    rng = np.random.default_rng(11)
    groups, size = 100, 20
    quality = rng.normal(0.0, 1.0, (groups, size))
    level = rng.uniform(-4.0, -0.5, (groups, 1))  # the request's own hide rate

    def sigmoid(z: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-z))

    columns = {
        "group_id": np.repeat(np.arange(groups), size),
        "candidate_id": np.tile(np.arange(size), groups),
        "p_purchase": sigmoid(-2.0 + quality).ravel(),
        "p_hide": sigmoid(level - 0.3 * quality + rng.normal(0.0, 0.3, (groups, size))).ravel(),
    }
    return write_log(tmp_path_factory.mktemp("logs") / "uneven.parquet", columns)


@pytest.fixture(scope="session")
def segmented_log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """600 requests x 20 candidates, a quarter of them from new users whose purchasable items are also the ones
    they hide (p_hide rises with purchase quality); power users hide little, whatever they are shown. Ranking
    by purchase keeps the mean p_hide of the top 10 low overall and high for new users."""
    rng = np.random.default_rng(17)
    groups, size = 600, 20
    quality = rng.normal(0.0, 1.0, (groups, size))
    new = (np.arange(groups) % 4 == 0)[:, None]

    def sigmoid(z: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-z))

    noise = rng.normal(0.0, 0.3, (groups, size))
    hide = np.where(new, sigmoid(-2.0 + 1.2 * quality + noise), sigmoid(-4.5 + noise))
    columns = {
        "group_id": np.repeat(np.arange(groups), size),
        "candidate_id": np.tile(np.arange(size), groups),
        "p_purchase": sigmoid(-2.0 + quality).ravel(),
        "p_hide": hide.ravel(),
        "user_segment": np.repeat(np.where(new[:, 0], "new", "power"), size),
        "creator_id": rng.integers(0, 5, groups * size).astype(str),  # a candidate attribute
    }
    return write_log(tmp_path_factory.mktemp("logs") / "segmented.parquet", columns)


@pytest.fixture(scope="session")
def risky_items_log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """400 requests x 20 candidates; a quarter of the items are `risky`: they sell better and are hidden far
    more often (and more variably) than the others. Ranking by purchase keeps the top 10's mean p_hide
    moderate overall and high over the risky items in it."""
    rng = np.random.default_rng(23)
    groups, size = 400, 20
    quality = rng.normal(0.0, 1.0, (groups, size))
    risky = rng.random((groups, size)) < 0.25

    def sigmoid(z: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-z))

    hide = np.where(risky, sigmoid(-2.5 + rng.normal(0.0, 1.0, (groups, size))),
                    sigmoid(-4.5 + rng.normal(0.0, 0.3, (groups, size))))
    columns = {
        "group_id": np.repeat(np.arange(groups), size),
        "candidate_id": np.tile(np.arange(size), groups),
        "p_purchase": sigmoid(-2.0 + quality + 0.8 * risky).ravel(),
        "p_hide": hide.ravel(),
        "item_kind": np.where(risky, "risky", "plain").ravel(),
    }
    return write_log(tmp_path_factory.mktemp("logs") / "risky_items.parquet", columns)
