"""`fusionrank simulate --ope` on a joined log logged with exploration (the bandit yardstick)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import yaml
from typer.testing import CliRunner

from app.cli import app
from app.offline.ope.environment import BanditEnvironment

ENV = BanditEnvironment()


def _files(tmp_path: Path) -> tuple[Path, Path, Path]:
    joined = tmp_path / "joined.parquet"
    pq.write_table(ENV.joined_log(1500, 0), joined)
    paths = []
    for which in ("target", "logging"):
        path = tmp_path / f"{which}.yaml"
        path.write_text(yaml.safe_dump(ENV.policy(which).to_yaml_dict(), sort_keys=False))
        paths.append(path)
    return joined, paths[0], paths[1]


def test_simulate_ope_estimates_each_policy_with_intervals_per_segment(tmp_path: Path) -> None:
    joined, target, logging = _files(tmp_path)
    out = tmp_path / "sim"
    result = CliRunner().invoke(app, [
        "simulate", "--logs", str(joined), "--policy", str(target), "--policy", str(logging), "--out", str(out),
        "--k", str(ENV.k), "--ope", "--ope-metric", "click", "--ope-metric", "utility", "--bootstrap", "50",
        "--segment", "segment", "--no-progress",
    ])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text())
    target_report = data["ope"]["bandit/target"]["overall"]["click"]
    assert set(target_report["estimates"]) == {"ips", "snips", "dr"}
    dr = target_report["estimates"]["dr"]
    assert dr["lower"] <= dr["value"] <= dr["upper"]
    # the logging policy evaluated on its own log (deterministic replay of its greedy ranking) differs from
    # what it served while exploring; the report keeps both
    assert data["ope"]["bandit/logging"]["overall"]["click"]["requests"] == 1500
    assert set(data["ope"]["bandit/target"]["segments"]["segment"]) == {"new", "returning"}
    report = (out / "report.md").read_text()
    assert "Off-policy estimates: bandit/target" in report
    assert "off-policy value of bandit/target" in result.output


def test_simulate_ope_refuses_a_log_without_propensities(tmp_path: Path) -> None:
    joined, target, _ = _files(tmp_path)
    table = pq.read_table(joined).drop_columns(["propensity"])
    pq.write_table(table, joined)
    result = CliRunner().invoke(app, ["simulate", "--logs", str(joined), "--policy", str(target), "--out",
                                      str(tmp_path / "sim"), "--ope", "--no-progress"])
    assert result.exit_code == 2
    assert "propensity" in result.output and "logs join" in result.output
