"""Pin the public names of each package, so that a change to them is a decision, not an accident."""

from __future__ import annotations

import importlib

import pytest

PUBLIC = {
    "app.artifacts": 30,
    "app.serving": 18,
    "app.monitoring": 12,
    "app.api": 5,
    "app.control": 13,
    "app.errors": 13,
    "app.offline.calibration": 28,
    "app.offline.tuning": 12,
    "app.offline.spark": 12,
}

# Packages pinned by name: a renamed or dropped name fails with the name, not with a count.
NAMES = {
    "app.cli": ["app", "main", "version_text"],
    "app.cli.options": [
        "BundleOption", "CalibrationMethod", "CalibrationOption", "Engine", "EngineOption", "EngineOptions", "LogLevel",
        "LogsOption", "MemoryMode", "ModelStoreOption", "NegativeOption", "PoliciesOption", "ProgressOption",
        "SparkConfOption", "SparkMasterOption", "SparkSampleOption", "TableOption",
    ],
    "app.cli.extras": ["EXTRAS", "missing_module", "needs_extra", "require_extra"],
    "app.cli.groups": ["OptionGroup", "with_groups"],
    "app.cli.exits": ["user_errors"],
    "app.cli.serve": ["serve"],
    "app.cli.demo": ["demo"],
    "app.cli.train": ["export", "train"],
    "app.cli.calibrate": ["calibrate_app"],
    "app.cli.tune": ["FractionTargets", "simulate", "tune_app"],
    "app.cli.tuning_runs": ["LogReader", "parse_pairs", "run_constrained", "run_fraction_tuner", "run_simulate"],
    "app.cli.policy": ["policy_app"],
    "app.cli.models": ["models_app"],
}


@pytest.mark.parametrize("module_name", sorted(NAMES))
def test_exported_names_are_the_pinned_ones(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert sorted(module.__all__) == sorted(NAMES[module_name])
    assert len(module.__all__) == len(set(module.__all__))
    for name in module.__all__:
        assert hasattr(module, name), f"{module_name}.{name}"


@pytest.mark.parametrize("module_name", sorted(PUBLIC))
def test_every_exported_name_exists(module_name: str) -> None:
    module = importlib.import_module(module_name)
    names = module.__all__
    assert len(names) == len(set(names)) == PUBLIC[module_name]
    for name in names:
        assert hasattr(module, name), f"{module_name}.{name}"


def test_serving_side_never_imports_torch_or_offline() -> None:
    import subprocess
    import sys

    code = (
        "import sys, app.main, app.serving, app.api, app.control, app.monitoring, app.artifacts; "
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'app.offline'))); "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_control_never_imports_the_http_layer_or_the_protocol() -> None:
    """app.control is imported by app.api and the CLI, never the other way round (no cycles)."""
    import ast
    from pathlib import Path

    import app.control

    root = Path(app.control.__file__).parent
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )
            for name in names:
                assert not name.startswith(("app.api", "app.protocol", "app.cli", "app.commands", "app.main")), \
                    f"{path.name} imports {name}"


def test_serving_never_imports_the_control_plane() -> None:
    import ast
    from pathlib import Path

    import app.serving

    root = Path(app.serving.__file__).parent
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("app.control"), f"{path.name} imports {node.module}"
