"""`simulate` and `tune` with `--engine spark` give the local answers on the same log."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from app.cli import app
from app.offline.tuning.demo_logs import synthetic_log_columns, write_log

pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parents[3]
POLICY = ROOT / "policies" / "home" / "1.yaml"
TASKS = ("click", "purchase", "hide", "report")


@pytest.fixture(scope="module")
def log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 groups x 15 candidates with the shipped policy's attributes."""
    return write_log(tmp_path_factory.mktemp("spark_logs") / "log.parquet", synthetic_log_columns(120, 15, TASKS,
                                                                                                   seed=11))


def _max_diff(a: Any, b: Any, path: str = "") -> float:
    if isinstance(a, dict):
        assert list(a) == list(b), path  # same metrics, in the same order
        return max([_max_diff(a[k], b[k], f"{path}.{k}") for k in a] or [0.0])
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            assert math.isnan(a) and math.isnan(b), path
            return 0.0
        return abs(a - b) / max(1.0, abs(a))
    assert a == b, path
    return 0.0


def test_simulate_on_spark_gives_the_local_metrics(spark: Any, log_path: Path, tmp_path: Path) -> None:
    summaries = {}
    for engine in ("local", "spark"):
        out = tmp_path / engine
        args = ["simulate", "--logs", str(log_path), "--policy", str(POLICY), "--grid", "hide_penalty=-8",
                "--context", "user_segment=user_tenure", "--out", str(out), "--no-progress", "--engine", engine]
        if engine == "spark":
            args += ["--spark-buckets", "3"]  # several buckets of whole groups, summed by Spark
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        summaries[engine] = json.loads((out / "results.json").read_text())
    local, remote = summaries["local"], summaries["spark"]
    assert set(local["metrics"]) == {"home/1", "grid1"}
    assert {"creator_hhi", "filtered:report_risk", "share:sponsored=True"} <= set(local["metrics"]["home/1"])
    assert _max_diff(local["metrics"], remote["metrics"]) < 1e-12
    assert _max_diff(local["segments"], remote["segments"]) < 1e-12
    assert local["pareto"] == remote["pareto"]


@pytest.mark.parametrize("command", [
    ["tune", "ndcg-gap", "--target", "click=0.5", "--target", "purchase=0.3", "--target", "hide=0.2",
     "--negative", "hide"],
    ["tune", "constrained", "--primary", "purchase", "--predictions", "--bound", "hide=0.01", "--sweep", "0"],
])
def test_tune_on_spark_gives_the_local_weights(spark: Any, log_path: Path, tmp_path: Path, command: list[str]) -> None:
    weights = {}
    for engine in ("local", "spark"):
        out = tmp_path / f"{engine}.json"
        result = CliRunner().invoke(app, [*command, "--logs", str(log_path), "--out", str(out), "--no-progress",
                                          "--engine", engine])
        assert result.exit_code == 0, result.output
        data = json.loads(out.read_text())
        weights[engine] = data["weights"]
    assert weights["local"] == weights["spark"]  # the very same groups, in the same order: the same search


def test_tune_on_spark_samples_whole_groups(spark: Any, log_path: Path) -> None:
    from app.offline.spark import sampled_candidate_log
    from app.offline.tuning.logs import read_candidate_log

    full = read_candidate_log(log_path, attributes=False)
    half = sampled_candidate_log(spark.read.parquet(str(log_path)), "log", tasks=None, sample=0.5)
    assert 0.3 * full.n_groups < half.n_groups < 0.7 * full.n_groups
    sizes = dict(zip(full.group_ids.tolist(), full.sizes.tolist(), strict=True))
    assert all(sizes[g] == n for g, n in zip(half.group_ids.tolist(), half.sizes.tolist(), strict=True))
    # `tune constrained --segment COLUMN` on Spark: the segment column comes along with the tuner's columns
    segmented = sampled_candidate_log(spark.read.parquet(str(log_path)), "log", tasks=None, columns=["user_tenure"])
    assert "user_tenure" in segmented.columns and "creator_id" not in segmented.columns
