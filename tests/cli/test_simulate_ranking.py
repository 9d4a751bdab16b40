"""`fusionrank simulate` on policies with a `ranking` block: the demo's version 2 against version 1."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from app.cli import app
from app.offline.demo import demo_policy
from app.offline.demo_ranking import demo_policy_v2


def _write_demo_policies(folder: Path) -> tuple[Path, Path]:
    """The demo's versions 1 and 2, with the report guardrail loosened alike: the synthetic log's report
    predictions are far above the demo model's, and 0.002 would leave about one candidate per request."""
    home = folder / "policies" / "home"
    home.mkdir(parents=True)
    v1, v2 = home / "1.yaml", home / "2.yaml"
    for path, policy in ((v1, demo_policy()), (v2, demo_policy_v2(demo_policy()))):
        policy["guardrails"][0]["above"] = 0.5
        policy["overrides"][0]["thresholds"]["report_risk"] = 0.5
        path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return v1, v2


def test_simulate_compares_the_demo_versions_with_a_pareto_plot(demo_shaped_log_path: Path, tmp_path: Path) -> None:
    v1, v2 = _write_demo_policies(tmp_path)
    out = tmp_path / "sim"
    result = CliRunner().invoke(app, [
        "simulate", "--logs", str(demo_shaped_log_path), "--policy", str(v1), "--policy", str(v2),
        "--grid", "hide_penalty=-0.25,-1", "--x", "creator_hhi", "--y", "new_item_share",
        "--out", str(out), "--no-progress",
    ])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "results.json").read_text())
    one, two = summary["metrics"]["home/1"], summary["metrics"]["home/2"]
    assert two["new_item_share"] > one["new_item_share"] + 0.02  # 3 fresh items in the first 10, where there are
    assert two["creator_hhi"] < one["creator_hhi"]  # the creator decay spreads the slate
    assert {"home/1", "home/2", "grid1", "grid2"} == set(summary["metrics"])  # the grid varies version 1
    assert (out / "pareto.png").stat().st_size > 10_000 and summary["pareto"]


def test_simulate_varies_the_exponents_of_a_product_form_policy(demo_shaped_log_path: Path, tmp_path: Path) -> None:
    _, v2 = _write_demo_policies(tmp_path)
    out = tmp_path / "sim"
    result = CliRunner().invoke(app, [
        "simulate", "--logs", str(demo_shaped_log_path), "--policy", str(v2), "--grid", "hide_penalty=0,-1.5",
        "--out", str(out), "--no-progress",
    ])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "results.json").read_text())["metrics"]
    assert metrics["grid2"]["expected:hide"] < metrics["grid1"]["expected:hide"]  # a steeper hide exponent


def test_simulate_refuses_linear_tuned_weights_on_a_product_form(demo_shaped_log_path: Path, tmp_path: Path) -> None:
    _, v2 = _write_demo_policies(tmp_path)
    tuned = tmp_path / "tuned.json"
    tuned.write_text(json.dumps({"signed_weights": {"click": 0.25, "hide": -0.75}}))
    result = CliRunner().invoke(app, [
        "simulate", "--logs", str(demo_shaped_log_path), "--policy", str(v2), "--weights", str(tuned),
        "--out", str(tmp_path / "sim"), "--no-progress",
    ])
    assert result.exit_code == 2
    assert "ranking.form" in result.output and "--grid" in result.output


def test_tuned_exponents_in_log_space_replay_on_the_product_form(demo_shaped_log_path: Path, tmp_path: Path) -> None:
    v1, v2 = _write_demo_policies(tmp_path)
    weights = tmp_path / "exponents.json"
    tuned = CliRunner().invoke(app, [
        "tune", "regret", "--logs", str(demo_shaped_log_path), "--target", "click=0.6", "--target", "hide=0.4",
        "--negative", "hide", "--product-epsilon", "0.01", "--out", str(weights), "--no-progress",
    ])
    assert tuned.exit_code == 0, tuned.output
    data = json.loads(weights.read_text())
    assert data["form"] == "product" and data["epsilon"] == 0.01 and data["signed_weights"]["hide"] <= 0
    out = tmp_path / "sim"
    args = ["simulate", "--logs", str(demo_shaped_log_path), "--out", str(out), "--no-progress", "--weights",
            str(weights)]
    result = CliRunner().invoke(app, [*args, "--policy", str(v2)])
    assert result.exit_code == 0, result.output
    assert "tuned:exponents" in json.loads((out / "results.json").read_text())["metrics"]
    refused = CliRunner().invoke(app, [*args, "--policy", str(v1)])  # exponents on a weighted sum
    assert refused.exit_code == 2 and "ranking.form" in refused.output and "product form" in refused.output
    data["epsilon"] = 0.1
    weights.write_text(json.dumps(data))
    refused = CliRunner().invoke(app, [*args, "--policy", str(v2)])
    assert refused.exit_code == 2 and "ranking.epsilon" in refused.output


def test_log_space_regret_ranks_by_the_product() -> None:
    import numpy as np

    from app.offline.tuning.objectives import TaskMatrix

    p = np.array([[[0.5, 0.2], [0.3, 0.01], [0.9, 0.6]]])
    mask = np.ones((1, 3), dtype=np.bool_)
    logged = TaskMatrix(("click", "hide"), np.array([1.0, -1.0]), np.log(0.01 + p), mask, 0.01)
    utility = logged.utility(np.array([0.7, 0.3]))
    product = (0.01 + p[0, :, 0]) ** 0.7 * (0.01 + p[0, :, 1]) ** -0.3
    assert np.argsort(-utility[0]).tolist() == np.argsort(-product).tolist()
    np.testing.assert_allclose(logged.utility_gains(utility)[0], product, rtol=1e-12)
