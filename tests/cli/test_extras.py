"""A base install (no torch, scipy, matplotlib or pyspark) gets one line naming the extra, not a traceback."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from app.cli import app
from app.cli.extras import EXTRAS, missing_module, needs_extra

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "model_store" / "demo_ranker" / "1"
POLICY = ROOT / "policies" / "home" / "1.yaml"


def _block(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make `modules` unimportable, as in an install without them (import raises ModuleNotFoundError)."""
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def _one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


def test_the_extras_table_matches_pyproject() -> None:
    """Every extra's modules are the distributions it lists, with the extras it includes spread out."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]

    def modules(extra: str) -> set[str]:
        out: set[str] = set()
        for requirement in extras[extra]:
            if requirement.startswith("fusionrank["):
                out |= modules(requirement.removeprefix("fusionrank[").removesuffix("]"))
            else:
                out.add(requirement.split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip())
        return out

    assert {name: set(mods) for name, mods in EXTRAS.items()} == {name: modules(name) for name in EXTRAS}


@pytest.mark.parametrize(("blocked", "args", "extra"), [
    (("torch",), ["demo", "--out", "{tmp}/demo", "--no-progress"], "train"),
    (("torch",), ["train", "--spec", "s.yaml", "--data", "d.parquet", "--out", "{tmp}/run"], "train"),
    (("onnx",), ["export", "--run", "{tmp}/run", "--out", "{tmp}/bundle"], "train"),
    (("scipy",), ["tune", "ndcg-gap", "--logs", "l.parquet", "--target", "click=1"], "offline"),
    (("scipy",), ["tune", "regret", "--logs", "l.parquet", "--target", "click=1"], "offline"),
    (("scipy",), ["tune", "constrained", "--logs", "l.parquet", "--primary", "click", "--bound", "hide=0.1"],
     "offline"),
    (("matplotlib",), ["simulate", "--logs", "l.parquet", "--policy", str(POLICY), "--out", "{tmp}/sim"],
     "offline"),
    (("matplotlib",), ["calibrate", "report", "--calibration", str(BUNDLE / "calibration" / "1.json"),
                       "--predictions", "p.parquet", "--out", "{tmp}/report"], "offline"),
])
def test_a_missing_extra_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, blocked: tuple[str, ...], args: list[str], extra: str
) -> None:
    _block(monkeypatch, *blocked)
    result = CliRunner().invoke(app, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.exit_code == 2
    command = " ".join(a for a in args[:2] if not a.startswith("-"))
    assert _one_line(result.output) == (
        f"fusionrank {command} needs the {extra!r} extra ({blocked[0]} is not installed): pip install -e '.[{extra}]'"
    )
    assert not any(tmp_path.iterdir())  # nothing was written


def test_engine_spark_needs_the_spark_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _block(monkeypatch, "pyspark")
    result = CliRunner().invoke(app, ["calibrate", "fit", "--engine", "spark", "--predictions", "p.parquet",
                                      "--out", str(tmp_path / "c.json")])
    assert result.exit_code == 2
    assert _one_line(result.output) == (
        "--engine spark needs the 'spark' extra (pyspark is not installed): pip install -e '.[spark]'"
    )


def test_the_base_commands_run_without_any_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    _block(monkeypatch, *{m for modules in EXTRAS.values() for m in modules})
    result = CliRunner().invoke(app, ["policy", "diff", str(POLICY), str(POLICY)])
    assert result.exit_code == 0 and "no differences" in result.output
    assert missing_module("offline") == "scipy" and missing_module("spark") == "pyspark"


def test_an_import_failing_inside_a_command_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check before the command covers the declared extra; a module of another extra imported later
    (here pyspark under a command that declares 'offline') is named too; other import errors pass through."""
    small = typer.Typer()

    @small.command()
    @needs_extra("offline")
    def late(module: str = "pyspark") -> None:
        __import__(module)

    _block(monkeypatch, "pyspark", "not_an_extra_module")
    result = CliRunner().invoke(small, [])
    assert result.exit_code == 2
    assert "needs the 'spark' extra (pyspark is not installed): pip install -e '.[spark]'" in result.output
    for other in ("not_an_extra_module", "scipy.not_a_submodule"):  # not an extra's; an installed one's bug
        result = CliRunner().invoke(small, ["--module", other])
        assert isinstance(result.exception, ModuleNotFoundError) and result.exception.name == other
