"""scripts/adult_census.py and its spec on an Adult-shaped table (no download): the prepared files train
the GBT family, which exports (parity <= 1e-5), calibrates from `fusionrank predict`'s output and is
served by the unchanged `/v1/score` — the issue's "done when" path, on the worked example's spec."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.artifacts import load_manifest
from app.cli import app as cli
from app.control.loader import load_snapshot
from app.main import create_app
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "adult_census.py"
SPEC = ROOT / "scripts" / "specs" / "adult_census.yaml"


@pytest.fixture(scope="module")
def adult() -> ModuleType:
    spec = importlib.util.spec_from_file_location("adult_census", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _adult_shaped(n: int, seed: int = 3) -> pa.Table:
    """The wheel's columns and value types; income and capital gain depend on the features."""
    rng = np.random.default_rng(seed)
    age = rng.integers(17, 90, n)
    years = rng.integers(1, 17, n)
    hours = rng.integers(1, 99, n)
    married = rng.random(n) < 0.45
    gender = np.where(rng.random(n) < 0.67, "Male", "Female")
    score = 0.08 * (years - 10) + 0.03 * (age - 38) + 0.02 * (hours - 40) + 1.5 * married - 1.4
    income = rng.random(n) < 1 / (1 + np.exp(-score))
    gain = np.where(rng.random(n) < 1 / (1 + np.exp(-(score - 1.5))), rng.integers(100, 20000, n), 0)
    loss = np.where((gain == 0) & (rng.random(n) < 0.05), rng.integers(100, 3000, n), 0)
    pick = lambda values: rng.choice(np.array(values, dtype=object), n)  # noqa: E731
    return pa.table(
        {
            "age": age,
            "workclass": pick(["Private", "Self-emp-inc", "Local-gov", "?"]),
            "fnlwgt": rng.integers(20_000, 900_000, n),
            "education": pick(["HS-grad", "Bachelors", "Masters", "11th"]),
            "educational-num": years,
            "marital-status": np.where(married, "Married-civ-spouse", "Never-married"),
            "occupation": pick(["Exec-managerial", "Sales", "Craft-repair", "?"]),
            "relationship": np.where(married, np.where(gender == "Male", "Husband", "Wife"), "Not-in-family"),
            "race": pick(["White", "Black", "Asian-Pac-Islander"]),
            "gender": gender,
            "capital-gain": gain,
            "capital-loss": loss,
            "hours-per-week": hours,
            "native-country": pick(["United-States", "Mexico", "?"]),
            "income": np.where(income, ">50K", "<=50K"),
        }
    )


def test_prepare_writes_three_leak_free_splits(adult: ModuleType, tmp_path: Path) -> None:
    table = _adult_shaped(2000)
    counts = adult.prepare(table, tmp_path, test_rows=700)
    assert counts == {"train": 1040, "valid": 260, "test": 700}
    test = pq.read_table(tmp_path / "test.parquet")
    assert test.column("person_id").to_pylist()[:2] == ["p00000", "p00001"]  # the first rows are the test rows
    assert not {"capital_gain", "capital_loss", "capital-gain", "income"} & set(test.column_names)
    gains = np.asarray(table.column("capital-gain"))[:700] > 0
    assert test.column("capital_gains").to_pylist() == gains.astype(int).tolist()
    workclass = table.column("workclass").to_pylist()[:700]
    assert [w is None for w in test.column("workclass").to_pylist()] == [w == "?" for w in workclass]
    ids = [pq.read_table(tmp_path / f"{s}.parquet").column("person_id").to_pylist() for s in ("train", "valid")]
    assert len(set(ids[0]) | set(ids[1]) | set(test.column("person_id").to_pylist())) == 2000


def test_the_gbt_family_trains_exports_calibrates_and_serves(adult: ModuleType, tmp_path: Path) -> None:
    data = tmp_path / "data"
    adult.prepare(_adult_shaped(6000), data, test_rows=2000)
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(cli, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    run("train", "--spec", str(SPEC), "--data", str(data), "--out", str(tmp_path / "run"), "--no-progress")
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["tasks"]["high_income"]["overall"]["auc"] > 0.7
    assert set(report["gbt"]["tasks"]) == {"high_income", "capital_gains"}
    bundle = tmp_path / "store" / "adult_census" / "1"
    assert "parity LightGBM vs onnxruntime" in run("export", "--run", str(tmp_path / "run"), "--out", str(bundle))
    assert load_manifest(bundle).parity.max_abs_diff <= 1e-5
    predictions = tmp_path / "predictions.parquet"
    run("predict", "--model", str(bundle), "--spec", str(SPEC), "--data", str(data), "--out", str(predictions))
    run("calibrate", "fit", "--predictions", str(predictions), "--model", str(bundle), "--version", "2",
        "--segment", "gender", "--holdout-split", "test")
    assert (bundle / "calibration" / "2.json").is_file()

    policies = tmp_path / "policies" / "offers"
    policies.mkdir(parents=True)
    policy = {
        "schema_version": 1, "surface": "offers", "name": "income first", "version": "1",
        "model": {"name": "adult_census", "version": "1"}, "calibration_version": "2",
        "utility": [{"name": "income", "task": "high_income", "weight": 1.0},
                    {"name": "gains", "task": "capital_gains", "weight": 0.5}],
        "slate": {"top_k": 3},
        "governance": {"owner": "ranking-team", "approved_by": ["reviewer"], "created_at": "2026-12-01T00:00:00Z",
                       "change_note": "adult worked example"},
    }
    (policies / "1.yaml").write_text(yaml.safe_dump(policy))
    (policies / "active").write_text("1\n")
    snapshot = load_snapshot(tmp_path / "store", tmp_path / "policies")
    assert snapshot.problems == () and "offers" in snapshot.surfaces
    body = json.loads((bundle / "sample_request.json").read_text())
    body["surface"] = "offers"
    settings = make_settings(store=tmp_path / "store", policies=tmp_path / "policies")
    with TestClient(create_app(settings)) as client:
        answer = client.post("/v1/score", json=body)
    assert answer.status_code == 200, answer.text
    served = answer.json()
    assert served["versions"]["model"] == "adult_census" and len(served["candidates"]) == 3
    assert set(served["candidates"][0]["predictions"]) == {"high_income", "capital_gains"}
