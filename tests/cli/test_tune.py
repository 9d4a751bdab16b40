"""`fusionrank tune ndcg-gap|regret|constrained` and `fusionrank simulate` as a user runs them, on synthetic logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from app.artifacts.loading import check_policy_against, load_manifest, load_policy
from app.cli import app
from app.errors import PolicyError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_POLICY = ROOT / "policies" / "home" / "1.yaml"
BUNDLE = ROOT / "model_store" / "demo_ranker" / "1"


def test_tune_ndcg_gap_writes_weights_json(small_log_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "weights.json"
    result = CliRunner().invoke(app, [
        "tune", "ndcg-gap", "--logs", str(small_log_path), "--target", "click=0.5", "--target", "purchase=0.3",
        "--target", "hide=0.2", "--negative", "hide", "--out", str(out), "--no-progress",
    ])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert set(data) >= {"weights", "targets", "achieved", "abs_error_sum"}
    assert data["abs_error_sum"] <= 0.02 and data["reached"] is True
    assert data["signed_weights"]["hide"] < 0 < data["signed_weights"]["click"]


def test_tune_reports_a_bad_file_and_a_bad_option(tmp_path: Path, small_log_path: Path) -> None:
    missing = CliRunner().invoke(app, ["tune", "regret", "--logs", str(tmp_path / "nope.parquet"),
                                       "--target", "click=0.5", "--target", "like=0.5", "--no-progress"])
    assert missing.exit_code == 2 and "nope.parquet" in missing.output and "file not found" in missing.output
    malformed = CliRunner().invoke(app, ["tune", "regret", "--logs", str(small_log_path), "--target", "click",
                                         "--no-progress"])
    assert malformed.exit_code == 2 and "NAME=NUMBER" in malformed.output


def test_tune_constrained_writes_the_frontier(small_log_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "constrained.json"
    result = CliRunner().invoke(app, [
        "tune", "constrained", "--logs", str(small_log_path), "--primary", "purchase", "--predictions",
        "--bound", "hide=0.03", "--negative", "hide", "--sweep", "2", "--out", str(out), "--no-progress",
    ])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["feasible"]["holdout"] is True
    assert data["top_k_mean_prediction"]["holdout"]["hide"] <= 0.03
    assert len(data["frontier"]["points"]) == 3  # two swept bounds and the asked one
    assert (tmp_path / "constrained_frontier.png").stat().st_size > 10_000
    assert "| bound on mean p_hide@10" in (tmp_path / "constrained_frontier.md").read_text()


def test_tune_constrained_says_which_bounds_its_room_can_meet(uneven_log_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "constrained.json"
    result = CliRunner().invoke(app, [
        "tune", "constrained", "--logs", str(uneven_log_path), "--primary", "purchase", "--predictions",
        "--bound", "hide=0.01", "--negative", "hide", "--sweep", "0", "--out", str(out), "--no-progress",
    ])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["feasible"]["train"] is False
    reachable = data["top_k_mean_prediction"]["train"]["hide"] + data["room"]["hide"]
    assert "Reachable with this room: hide >=" in " ".join(result.output.split())
    assert f"{reachable:.4g}" in result.output


def test_tune_constrained_bounds_each_segment_value_and_reports_it(segmented_log_path: Path, tmp_path: Path) -> None:
    common = ["tune", "constrained", "--logs", str(segmented_log_path), "--primary", "purchase", "--predictions",
              "--bound", "hide=0.12", "--negative", "hide", "--sweep", "0", "--no-progress"]
    out = tmp_path / "reported.json"
    result = CliRunner().invoke(app, [*common, "--report-segment", "user_segment", "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "by user_segment (reported only), held-out" in text
    assert ("some user_segment values exceed a bound on the held-out requests; --segment user_segment bounds each"
            " value") in text
    page = (tmp_path / "reported_segments.md").read_text()
    assert "| new | " in page and "**no** |" in page and "| **overall** |" in page

    out = tmp_path / "enforced.json"
    result = CliRunner().invoke(app, [*common, "--segment", "user_segment", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["segments"]["enforced"] and data["segments"]["feasible_holdout"]
    assert data["segments"]["markdown"] == str(tmp_path / "enforced_segments.md")
    assert "**no**" not in (tmp_path / "enforced_segments.md").read_text()

    missing = CliRunner().invoke(app, [*common, "--segment", "user_tenure", "--out", str(out)])
    assert missing.exit_code == 2 and "user_tenure" in missing.output and "no such column" in missing.output
    both = CliRunner().invoke(app, [*common, "--segment", "a", "--report-segment", "b", "--out", str(out)])
    assert both.exit_code == 2 and "not both" in both.output


def test_simulate_compares_policies_and_emits_a_draft_that_cannot_be_served(
    demo_shaped_log_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sim"
    result = CliRunner().invoke(app, [
        "simulate", "--logs", str(demo_shaped_log_path), "--policy", str(SHIPPED_POLICY),
        "--grid", "hide_penalty=0,-8", "--grid", "click=0.5,1", "--context", "user_segment=user_tenure",
        "--out", str(out), "--emit-policy", "--no-progress",
    ])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "results.json").read_text())
    assert set(summary["metrics"]) == {"home/1", "grid1", "grid2", "grid3", "grid4"}
    base = summary["metrics"]["home/1"]
    assert {"ndcg@10:click", "expected:hide", "utility", "filtered:report_risk", "filtered:creator_diversity",
            "creator_hhi", "new_item_share", "share:sponsored=True"} <= set(base)
    assert base["share:sponsored=True"] <= 3 / 10 + 1e-9  # the sponsored cap of the policy holds
    no_penalty, big_penalty = summary["metrics"]["grid2"], summary["metrics"]["grid4"]  # click=1
    assert big_penalty["expected:hide"] < no_penalty["expected:hide"]
    assert set(summary["segments"]["user_tenure"]["home/1"]) == {"new", "regular", "power"}
    report = (out / "report.md").read_text()
    assert "## Pareto frontier" in report and "pareto.png" in report
    assert (out / "pareto.png").stat().st_size > 10_000

    draft_path = Path(summary["emitted_policy"])
    # policies/home holds 1.yaml, 2.yaml and 3.yaml: the draft takes the next free version, overwriting none
    assert draft_path.parent.name == "home" and draft_path.name == "4.yaml"
    draft = load_policy(draft_path)
    assert draft.governance.approved_by == [] and draft.version == "4"
    manifest = load_manifest(BUNDLE)
    check_policy_against(draft, manifest, "1", draft_path, serving=False)  # valid in every other respect
    with pytest.raises(PolicyError, match=r"approved_by|approver"):
        check_policy_against(draft, manifest, "1", draft_path)


def test_simulate_reports_the_filter_rates_of_every_variant(demo_shaped_log_path: Path, tmp_path: Path) -> None:
    """The first policy has no guardrail or slate rule; the second one's rates still get their table."""
    data = yaml.safe_load(SHIPPED_POLICY.read_text())
    data.update(version="9", guardrails=[], slate={"top_k": 20}, overrides=[])
    open_policy = tmp_path / "9.yaml"
    open_policy.write_text(yaml.safe_dump(data))
    out = tmp_path / "sim"
    result = CliRunner().invoke(app, [
        "simulate", "--logs", str(demo_shaped_log_path), "--policy", str(open_policy), "--policy",
        str(SHIPPED_POLICY), "--out", str(out), "--no-progress",
    ])
    assert result.exit_code == 0, result.output
    report = (out / "report.md").read_text()
    table = report.split("## Filter rates (share of logged candidates)", 1)[1].split("##", 1)[0]
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| home/")}
    assert "`filtered:report_risk`" in table and "`filtered:creator_diversity`" in table
    assert set(rows["home/9"].split("|")[2:-1]) == {" – "}
    assert "–" not in rows["home/1"]


def test_simulate_replays_tuned_weights_on_the_policy(demo_shaped_log_path: Path, tmp_path: Path) -> None:
    tuned = tmp_path / "tuned.json"
    tuned.write_text(json.dumps({"signed_weights": {"click": 0.25, "hide": -0.75}}))
    out = tmp_path / "sim"
    args = ["simulate", "--logs", str(demo_shaped_log_path), "--policy", str(SHIPPED_POLICY), "--out", str(out),
            "--context", "user_segment=user_tenure", "--no-progress"]
    result = CliRunner().invoke(app, [*args, "--weights", str(tuned)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "results.json").read_text())
    # click 1.0 and hide_penalty -2.0 keep their total |weight| 3.0, split 1:3
    assert summary["variants"]["tuned:tuned"].endswith("(click=0.75, hide_penalty=-2.25)")
    purchase = tmp_path / "purchase.json"
    purchase.write_text(json.dumps({"signed_weights": {"click": 0.5, "purchase": 0.5}}))
    refused = CliRunner().invoke(app, [*args, "--weights", str(purchase)])
    assert refused.exit_code == 2 and "'purchase'" in refused.output and "plain terms" in refused.output
