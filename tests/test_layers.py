"""Pin the import rules of the layout (DESIGN.md): arrows only point down
api -> protocol -> control -> monitoring -> serving -> artifacts, and nothing on the serving side loads torch,
LightGBM or app.offline (the serving image has none of them)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[1] / "app"

# package -> app packages it must never import (directly, at any depth of its modules)
FORBIDDEN = {
    "serving": ("app.api", "app.protocol", "app.control", "app.monitoring", "app.offline", "app.cli", "app.commands"),
    "artifacts": ("app.api", "app.protocol", "app.monitoring", "app.serving", "app.offline"),
    "monitoring": ("app.api", "app.protocol", "app.offline", "app.cli", "app.commands"),
    "protocol": ("app.api", "app.control", "app.offline", "app.cli", "app.commands"),
    "control": ("app.api", "app.protocol", "app.offline", "app.cli", "app.commands"),
    "api": ("app.offline", "app.cli", "app.commands"),
    # The client ships to other teams' backends: it never needs the server's code.
    "client": ("app.api", "app.protocol", "app.control", "app.monitoring", "app.serving", "app.artifacts",
               "app.offline", "app.cli", "app.commands", "app.settings", "app.errors", "app.main"),
}
HEAVY = ("torch", "lightgbm", "app.offline")


def imported_modules(path: Path) -> set[str]:
    """Every module an app file imports, at the top or inside a function."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _under(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_layer_never_imports_a_layer_above_it(package: str) -> None:
    bad = sorted(
        f"{path.relative_to(APP.parent)} imports {name}"
        for path in (APP / package).rglob("*.py")
        for name in imported_modules(path)
        if _under(name, FORBIDDEN[package] + HEAVY)
    )
    assert bad == []


def test_the_serving_side_loads_no_training_stack() -> None:
    """Importing the service (routes, codecs, data plane, metrics) loads neither torch, LightGBM nor offline."""
    code = (
        "import sys, app.main, app.api, app.protocol, app.serving, app.serving.answer, app.monitoring; "
        "heavy = ('torch', 'lightgbm', 'app.offline'); "
        "print(','.join(sorted(m for m in sys.modules if any(m == h or m.startswith(h + '.') for h in heavy))))"
    )
    root = APP.parent
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root,
        env={"PYTHONPATH": str(root), "PATH": ""}, timeout=120,
    )
    assert out.stdout.strip() == ""
