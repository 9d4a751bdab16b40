"""`fusionrank models list` and `models golden` on a store with two model versions and a pin."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from app.cli import app
from app.control.pins import BundlePin, write_pin
from tests.lifecycle_helpers import build_store


def test_models_list_shows_versions_checks_calibrations_and_triples(tmp_path: Path) -> None:
    store, policies = build_store(tmp_path)
    (store / "demo_ranker" / "2" / "golden.json").unlink()
    write_pin(policies / "home", BundlePin("2", "2"))
    runner = CliRunner()
    result = runner.invoke(app, ["models", "list", "--model-store", str(store), "--policies", str(policies), "--json"])
    assert result.exit_code == 0, result.output
    listing = json.loads(result.output)
    models = {m["version"]: m for m in listing["models"]}
    assert set(models) == {"1", "2"} and models["1"]["golden_batch"] and not models["2"]["golden_batch"]
    assert models["2"]["sha256"] != models["1"]["sha256"]
    assert [c["version"] for c in models["2"]["calibrations"]] == ["1", "2"]
    assert listing["surfaces"]["home"] == {
        "model": "demo_ranker", "model_version": "2", "calibration_version": "2", "policy_version": "1",
        "pinned": "yes",
    }
    result = runner.invoke(app, ["models", "golden", str(store / "demo_ranker" / "2")])
    assert result.exit_code == 0 and (store / "demo_ranker" / "2" / "golden.json").is_file()
    table = runner.invoke(app, ["models", "list", "--model-store", str(store), "--policies", str(policies)])
    assert "surface home: model demo_ranker/2, calibration 2, policy 1 (pinned" in table.output
