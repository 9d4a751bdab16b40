"""Every command's --help renders and lists the choices of its choice options; --version says what runs."""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing
from collections.abc import Callable
from enum import Enum
from importlib.metadata import version
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import app as package
from app.cli import app, version_text
from app.cli.options import CalibrationMethod, Engine, LogLevel, MemoryMode


def _commands() -> list[tuple[list[str], Callable[..., Any] | None]]:
    """(the words that reach a command or group, its function: None for a group) for the whole tree."""
    found: list[tuple[list[str], Callable[..., Any] | None]] = []

    def walk(words: list[str], typer_app: typer.Typer) -> None:
        found.append((words, None))
        for command in typer_app.registered_commands:
            assert command.callback is not None
            found.append(([*words, command.name or command.callback.__name__.replace("_", "-")], command.callback))
        for group in typer_app.registered_groups:
            assert group.typer_instance is not None
            walk([*words, group.name or group.typer_instance.info.name], group.typer_instance)

    walk([], app)
    return found


def _choices(function: Callable[..., Any]) -> dict[str, tuple[str, ...]]:
    """The options of a command whose type is an enum, with their values."""
    out = {}
    for name, parameter in inspect.signature(function, eval_str=True).parameters.items():
        kind = typing.get_args(parameter.annotation)[0] if typing.get_args(parameter.annotation) else None
        if isinstance(kind, type) and issubclass(kind, Enum):
            out[name] = tuple(member.value for member in kind)
    return out


COMMANDS = _commands()


def test_every_command_is_there() -> None:
    leaves = {" ".join(words) for words, function in COMMANDS if function is not None}
    assert leaves == {
        "serve", "demo", "train", "export", "predict", "simulate", "calibrate fit", "calibrate apply",
        "calibrate report", "tune ndcg-gap", "tune regret", "tune constrained", "policy validate", "policy diff",
        "models list", "models golden", "logs join", "logs compact", "rollout report",
    }


@pytest.mark.parametrize(("words", "function"), COMMANDS, ids=[" ".join(w) or "fusionrank" for w, _ in COMMANDS])
def test_help_renders_with_every_choice(words: list[str], function: Callable[..., Any] | None) -> None:
    result = CliRunner().invoke(app, [*words, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Usage: fusionrank" in result.output
    for name, values in (_choices(function) if function else {}).items():  # shown as <a|b|c>
        assert "|".join(values) in result.output, (name, result.output)


def test_choice_options_are_enums() -> None:
    """Each option whose value is one of a few names is an enum that --help lists."""
    engine = tuple(Engine)
    found = {(" ".join(words), name): values for words, function in COMMANDS if function
             for name, values in _choices(function).items()}
    assert found == {
        ("serve", "log_level"): tuple(LogLevel),
        ("train", "memory"): tuple(MemoryMode),
        ("calibrate fit", "method"): tuple(CalibrationMethod),
        ("calibrate fit", "engine"): engine,
        ("calibrate report", "engine"): engine,
        ("tune ndcg-gap", "engine"): engine,
        ("tune regret", "engine"): engine,
        ("tune constrained", "engine"): engine,
        ("simulate", "engine"): engine,
        ("logs join", "engine"): engine,
    }


def test_the_calibration_methods_are_the_fitters() -> None:
    from app.offline.calibration import METHODS

    assert [m.value for m in CalibrationMethod] == list(METHODS)


def test_version_names_the_package_the_serving_libraries_and_the_extras() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].startswith(f"fusionrank {package.__version__} (Python ")
    assert lines[1] == (f"serving: onnxruntime {version('onnxruntime')}, numpy {version('numpy')},"
                        f" pyarrow {version('pyarrow')}")
    assert lines[2] == "extras: offline, train, spark"  # the dev install has them all
    assert len(lines) == 3


def test_version_says_which_extra_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    assert version_text().splitlines()[2] == "extras: offline, train no (torch missing), spark"


def test_python_m_app_cli_and_importing_it_load_no_offline_module() -> None:
    code = (
        "import sys, runpy; sys.argv = ['fusionrank', '--version']\n"
        "try:\n    runpy.run_module('app.cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "heavy = ('torch', 'scipy', 'matplotlib', 'pyspark', 'pandas', 'onnx')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m.startswith('app.offline')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[0].startswith("fusionrank ")
    assert out.stdout.splitlines()[-1] == "[]"
