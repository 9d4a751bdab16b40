"""`simulate --cascade-store`: the cascade replayed with both bundles against scoring every candidate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from app.artifacts.loading import load_policy
from app.cli import app
from app.offline.ope.evaluate import read_joined_log
from app.offline.synthetic import generator as syn
from app.offline.tuning.cascade_replay import cascade_quality, keep_rows
from app.offline.tuning.demo_logs import demo_log_columns, write_log
from tests.cascade_helpers import cascade_policy, copy_bundle_as


@pytest.fixture(scope="module")
def featured_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A candidate log of ~40 requests of up to 60 candidates with the demo model's features logged."""
    log = syn.generate_log(2400, seed=3, group_size=60)
    pairs = np.stack([log.group_id, log.candidate_id], axis=1)
    log = log.take(np.sort(np.unique(pairs, axis=0, return_index=True)[1]))  # as demo_log_columns dedups
    columns: dict[str, Any] = demo_log_columns(log, np.full((len(log.group_id), len(syn.TASKS)), 0.01))
    for i, name in enumerate(syn.NUMERIC):
        columns[name] = log.numeric[:, i]
    for name, values in log.categorical.items():
        columns[name] = values
    return write_log(tmp_path_factory.mktemp("cascade") / "joined.parquet", columns)


def test_keep_rows_keeps_whole_rows_in_group_order(featured_log: Path) -> None:
    log = read_joined_log(featured_log)
    keep = np.zeros(int(log.mask.sum()), dtype=bool)
    keep[::3] = True
    kept, rows = keep_rows(log, keep)
    assert int(kept.mask.sum()) == keep.sum() and (rows == np.flatnonzero(keep)).all()
    assert (kept.predictions[kept.mask] == log.predictions[log.mask][rows]).all()
    assert (kept.columns["candidate_id"] == log.columns["candidate_id"][rows]).all()


def test_a_good_first_stage_loses_less_than_a_bad_one_and_none_when_nothing_is_cut(
    store_copy: tuple[Path, Path], featured_log: Path
) -> None:
    store, policies = store_copy
    copy_bundle_as(store, "demo_light")
    log = read_joined_log(featured_log)
    assert int(log.sizes.max()) > 25
    quality = {}
    for version, cascade in (("3", {"top_n": 25}), ("4", {"top_n": 25, "task": "hide"}), ("5", {"top_n": 60})):
        path = cascade_policy(policies, version, **cascade)
        quality[version] = cascade_quality(log, load_policy(path), path, store, k=10)
    assert quality["5"]["overlap@10"] == 1.0 and quality["5"]["cut_share"] == 0.0  # nothing cut, nothing lost
    assert quality["5"]["ndcg@10"] == pytest.approx(1.0)
    assert quality["3"]["cut_share"] > 0.2 and quality["3"]["requests_cut"] > 0
    # The policy's own utility on (a copy of) the main model keeps its top 10; `hide` as first stage does not.
    assert quality["3"]["overlap@10"] > 0.9 > quality["4"]["overlap@10"]
    assert quality["3"]["ndcg@10"] > quality["4"]["ndcg@10"]
    assert quality["3"]["utility_ratio"] > quality["4"]["utility_ratio"]


def test_simulate_reports_the_cascade(store_copy: tuple[Path, Path], featured_log: Path, tmp_path: Path) -> None:
    store, policies = store_copy
    copy_bundle_as(store, "demo_light")
    path = cascade_policy(policies, "3", top_n=25)
    out = tmp_path / "sim"
    result = CliRunner().invoke(app, ["simulate", "--policy", str(policies / "home" / "1.yaml"), "--policy", str(path),
                                      "--logs", str(featured_log), "--out", str(out), "--cascade-store", str(store),
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "cascade of home/3 (top_n=25): overlap@10=" in result.output
    summary = json.loads((out / "results.json").read_text())
    assert set(summary["cascade"]) == {"home/3"}
    assert "## Cascade of home/3" in (out / "report.md").read_text()
