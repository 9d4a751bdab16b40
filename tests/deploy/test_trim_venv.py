"""deploy/image/trim_venv.py on a small venv made of real files: what goes, what stays, what still works."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

import pytest

from tests.deploy.conftest import DEPLOY, debian_tool

SCRIPT = DEPLOY / "image" / "trim_venv.py"


def trimmer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("trim_venv", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    """A venv root with a fake pyarrow (a real native module under four names) and test folders."""
    root = tmp_path / "venv"
    site = root / "lib" / "python3.11" / "site-packages"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "f2py").write_text("#!/bin/sh\n")
    native = Path(sysconfig.get_paths()["platlib"]) / "yaml"
    extension = next(native.glob("_yaml.*.so"))  # PyYAML's C extension: unstripped in its wheel
    pyarrow = site / "pyarrow"
    (pyarrow / "include" / "arrow").mkdir(parents=True)
    (pyarrow / "include" / "arrow" / "api.h").write_text("#pragma once\n")
    (pyarrow / "tests").mkdir()
    (pyarrow / "tests" / "test_ipc.py").write_text("x = 1\n")
    (pyarrow / "__init__.py").write_text("VALUE = 42\n")
    (pyarrow / "lib.pyx").write_text("# cython\n")
    (pyarrow / "flight.py").write_text("from pyarrow._flight import *\n")
    for name in ("libarrow_python.so", "libarrow_python.so.2600", "libarrow_python.so.2600.1.0"):
        shutil.copy(extension, pyarrow / name)
    shutil.copy(extension, pyarrow / "libarrow_flight.so.2600")
    shutil.copy(extension, pyarrow / "libarrow.so.2600")
    (site / "numpy.libs").mkdir()
    shutil.copy(extension, site / "numpy.libs" / "libopenblas.so")
    (site / "onnxruntime" / "transformers").mkdir(parents=True)
    (site / "onnxruntime" / "transformers" / "big.py").write_text("x = 1\n" * 1000)
    (site / "onnxruntime" / "__init__.py").write_text("")
    return root


def test_trim_removes_unused_parts_dedupes_and_strips(venv: Path) -> None:
    debian_tool("strip", "binutils")
    site = venv / "lib" / "python3.11" / "site-packages"
    pyarrow = site / "pyarrow"
    shipped = (pyarrow / "libarrow.so.2600").stat().st_size
    freed = trimmer().trim(venv)

    for gone in ("tests", "include", "lib.pyx", "flight.py", "libarrow_flight.so.2600"):
        assert not (pyarrow / gone).exists(), gone
    assert not (site / "onnxruntime" / "transformers").exists()
    assert not (venv / "bin" / "f2py").exists()
    assert (pyarrow / "__init__.py").read_text() == "VALUE = 42\n"
    assert (site / "onnxruntime" / "__init__.py").exists()
    # The longest name is the file, the sonames point at it.
    assert not (pyarrow / "libarrow_python.so.2600.1.0").is_symlink()
    assert {p.name: p.readlink().name for p in pyarrow.glob("libarrow_python.so*") if p.is_symlink()} == {
        "libarrow_python.so": "libarrow_python.so.2600.1.0", "libarrow_python.so.2600": "libarrow_python.so.2600.1.0",
    }
    # Stripped, except the auditwheel folder; the same bytes under another library's name stay a file.
    assert (pyarrow / "libarrow.so.2600").stat().st_size < shipped
    assert (site / "numpy.libs" / "libopenblas.so").stat().st_size == shipped
    assert (pyarrow / "libarrow.so.2600").is_file() and not (pyarrow / "libarrow.so.2600").is_symlink()
    flight_py = len("from pyarrow._flight import *\n")
    assert freed["debug symbols (strip)"] > 0 and freed["pyarrow Arrow Flight"] == shipped + flight_py
    assert freed["pyarrow libarrow_python copies (symlinked)"] > 0


def test_a_stripped_extension_still_imports(venv: Path) -> None:
    """strip --strip-unneeded keeps what the dynamic loader needs: the stripped module loads in Python."""
    debian_tool("strip", "binutils")
    trimmer().trim(venv)
    stripped = venv / "lib" / "python3.11" / "site-packages" / "pyarrow" / "libarrow.so.2600"
    done = subprocess.run(
        [sys.executable, "-c", f"import ctypes; ctypes.CDLL({str(stripped)!r}); print('loaded')"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.stdout.strip() == "loaded", done.stderr


def test_trim_refuses_a_folder_that_is_not_a_venv(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="pass the venv root"):
        trimmer().trim(tmp_path)
