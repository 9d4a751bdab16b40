"""`fusionrank policy validate` and `fusionrank policy diff` as an operator runs them."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from app.cli import app
from tests.conftest import MODEL_STORE, POLICIES, write_policy

runner = CliRunner()


def test_validate_accepts_the_shipped_policies() -> None:
    for version in ("1", "2", "3"):
        result = runner.invoke(app, ["policy", "validate", str(POLICIES / "home" / f"{version}.yaml"),
                                     "--model-store", str(MODEL_STORE)])
        assert result.exit_code == 0, result.output
        assert "OK" in result.output and "dry run on 40 golden candidates" in result.output


def test_validate_fails_with_file_field_and_fix(store_copy: tuple[Path, Path]) -> None:
    store, policies = store_copy
    path = write_policy(policies, "3", lambda p: p["utility"][3].update(weight=5.0))  # report is negative
    result = runner.invoke(app, ["policy", "validate", str(path), "--model-store", str(store)])
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "INVALID" in text and "3.yaml" in text and "utility[3].weight" in text and "weight <= 0" in text


def test_validate_fails_on_the_dry_run(store_copy: tuple[Path, Path]) -> None:
    store, policies = store_copy
    path = write_policy(policies, "3", lambda p: p["attributes"].update(eligible="string"))
    result = runner.invoke(app, ["policy", "validate", str(path), "--model-store", str(store)])
    assert result.exit_code == 1
    assert "dry run" in " ".join(result.output.split())


def test_validate_reports_every_schema_problem(tmp_path: Path) -> None:
    path = tmp_path / "home" / "3.yaml"
    path.parent.mkdir()
    path.write_text("schema_version: 1\nsurface: home\n")
    result = runner.invoke(app, ["policy", "validate", str(path), "--model-store", str(MODEL_STORE)])
    assert result.exit_code == 1
    assert "governance: Field required" in result.output


def test_diff_shows_weights_old_to_new() -> None:
    result = runner.invoke(app, ["policy", "diff", str(POLICIES / "home" / "1.yaml"),
                                 str(POLICIES / "home" / "2.yaml")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "0.05 -> 0.12" in result.output and "purchase_margin" in result.output
    assert "sponsored_cap" in result.output and "3 -> 2" in result.output


def test_diff_of_identical_files_and_of_a_broken_file(tmp_path: Path) -> None:
    shipped = str(POLICIES / "home" / "1.yaml")
    assert "no differences" in runner.invoke(app, ["policy", "diff", shipped, shipped]).output
    broken = tmp_path / "broken.yaml"
    broken.write_text("utility: [\n")
    result = runner.invoke(app, ["policy", "diff", shipped, str(broken)])
    assert result.exit_code == 1 and "invalid YAML" in result.output
