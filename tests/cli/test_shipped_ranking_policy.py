"""The shipped `policies/home/3.yaml`: the demo's ranking version, validated, served and simulated against version 1."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.cli import app
from app.main import create_app
from app.offline.demo import demo_policy
from app.offline.demo_ranking import SHIPPED_VERSION, demo_policy_v2, policy_text
from app.offline.tuning.demo_logs import NEW_ITEM_HOURS, synthetic_log_columns, write_log
from tests.conftest import BUNDLE, MODEL_STORE, POLICIES, make_settings

HOME = POLICIES / "home"


def test_the_shipped_version_3_is_what_the_demo_writes() -> None:
    assert yaml.safe_load((HOME / "1.yaml").read_text()) == demo_policy()
    assert (HOME / f"{SHIPPED_VERSION}.yaml").read_text() == policy_text(demo_policy_v2(demo_policy(), "3")), (
        "regenerate it: PYTHONPATH=$PWD python -m app.offline.demo_ranking 3 > policies/home/3.yaml")
    assert (HOME / "active").read_text().strip() == "1"
    sample = json.loads((BUNDLE / "sample_request.json").read_text())
    for candidate in sample["candidates"]:  # the sample marks new items as the demo logs do
        assert candidate["attributes"]["is_new"] == (candidate["features"]["item_age_hours"] < NEW_ITEM_HOURS)


def _served(sample: dict[str, Any]) -> dict[str, Any]:
    sample["options"] = {"debug": True, "return_filtered": True}
    with TestClient(create_app(make_settings(MODEL_STORE, POLICIES))) as client:
        answers = {v: client.post("/v1/score", json={**sample, "policy_version": v}) for v in ("1", "3")}
    assert all(a.status_code == 200 for a in answers.values()), answers["3"].text
    one, three = answers["1"].json(), answers["3"].json()
    assert one["versions"]["policy_version"] == "1" and three["versions"]["policy_version"] == "3"
    return three


def test_version_3_validates_serves_and_simulates_against_version_1(tmp_path: Path) -> None:
    runner = CliRunner()
    validated = runner.invoke(app, ["policy", "validate", str(HOME / "3.yaml"), "--model-store", str(MODEL_STORE)])
    assert validated.exit_code == 0 and "OK" in validated.output, validated.output

    sample = json.loads((BUNDLE / "sample_request.json").read_text())
    new = {c["id"] for c in sample["candidates"] if c["attributes"]["is_new"]}
    got = _served(sample)
    ranked = got["candidates"]
    rows = {c["id"]: c["debug"]["ranking"] for c in ranked}
    assert any(r["decay"]["creator_decay"] < 1.0 for r in rows.values())  # a creator's second candidate
    promoted = [i for i, r in rows.items() if r.get("promoted_by") == "fresh_items"]
    assert promoted and set(promoted) <= new and got["slate_shortfalls"] == []
    assert len(new & {c["id"] for c in ranked[:10]}) >= 4
    for candidate in ranked:  # the product form: exp(sum of the log-factors) x (1 + the value term)
        terms = {t["name"]: t for t in candidate["debug"]["terms"]}
        for name in ("click", "hide_penalty", "report_penalty"):
            term = terms[name]
            assert math.isclose(term["contribution"], term["weight"] * math.log(0.01 + term["prediction"]))
        product = math.exp(sum(terms[n]["contribution"] for n in ("click", "hide_penalty", "report_penalty")))
        assert math.isclose(candidate["utility"], product * (1 + terms["purchase_margin"]["contribution"]))

    columns = synthetic_log_columns(300, 25, ("click", "purchase", "hide", "report"), seed=5)
    columns["p_report"] = columns["p_report"] * 0.05  # the demo model's report risk is ~1e-4, not ~1e-2
    logs = write_log(tmp_path / "logs.parquet", columns)
    out = tmp_path / "sim"
    simulated = runner.invoke(app, [
        "simulate", "--logs", str(logs), "--policy", str(HOME / "1.yaml"), "--policy", str(HOME / "3.yaml"),
        "--x", "creator_hhi", "--y", "new_item_share", "--out", str(out), "--no-progress",
    ])
    assert simulated.exit_code == 0, simulated.output
    summary = json.loads((out / "results.json").read_text())
    one, three = summary["metrics"]["home/1"], summary["metrics"]["home/3"]
    # 4 new items in the first 10 where a request has them (a fifth of the candidates are new, before the filters)
    assert three["new_item_share"] > one["new_item_share"] + 0.03
    assert three["creator_hhi"] < one["creator_hhi"]  # the creator decay spreads the top 10
    assert "home/3" in summary["pareto"] and np.isfinite(three["ndcg@10:click"])
    assert (out / "pareto.png").stat().st_size > 10_000 and "pareto.png" in (out / "report.md").read_text()
