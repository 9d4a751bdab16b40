"""Trim the scorer image's virtual environment: drop what the service never loads, strip debug symbols.

Run by the Dockerfile's build stage on /opt/fusionrank after the locked dependencies are installed:

    python3 deploy/image/trim_venv.py /opt/fusionrank

Every cut below was measured on the image (deploy/container-smoke.sh then scores JSON and Arrow bodies, sends
feedback, reads /metrics, and round-trips Parquet, CSV and pyarrow.compute as the offline commands do). Bytes
freed with pyarrow 26.0.1, onnxruntime 1.32.0, numpy 2.4.6 on x86_64 (the build log prints them):

- test suites inside wheels (``tests`` folders, numpy's mostly): 22 MB;
- pyarrow's C++ headers and Cython sources (include/, includes/, src/, *.pyx, *.pxd, *.pxi): 7 MB;
- Arrow Flight (libarrow_flight, libarrow_python_flight, _flight, flight.py): 33 MB, and the S3 filesystem
  (libarrow_s3, _s3fs): 17 MB. Nothing in fusionrank uses either; ``import pyarrow.flight`` then fails with
  ModuleNotFoundError and ``pyarrow.fs`` lists S3FileSystem as not built, as pyarrow does for its own builds
  without them;
- libarrow_python shipped three times under its three names (a wheel cannot hold symlinks): two become
  symlinks, 5 MB;
- onnxruntime's C API library (capi/libonnxruntime.so.*, for C and C++ programs): 35 MB. The Python
  module (capi/onnxruntime_pybind11_state, 37 MB) contains the runtime itself: it neither links this library
  (no NEEDED entry) nor names it (no string in the module, no Python file that loads it);
- onnxruntime's Python tooling (transformers/, quantization/, tools/, datasets/), never imported by
  ``import onnxruntime``: 8 MB;
- numpy's f2py, C headers and static libraries: 2 MB;
- debug symbols of the native extensions (``strip --strip-unneeded``; uvloop alone 12 MB, pyarrow's libraries
  25 MB, PyYAML, httptools, pydantic-core...): 40 MB. The auditwheel-vendored libraries in ``*.libs`` folders
  (numpy's OpenBLAS) are left as shipped.

Kept although large: pyarrow's libarrow, libarrow_compute, libparquet, libarrow_dataset, libarrow_acero and
libarrow_substrait (libarrow_python links every one of them), onnxruntime's pybind module (the runtime
itself), numpy's OpenBLAS (vendored by auditwheel), and the .pyc files (23 MB: without them every start
would compile the imported modules again, as the root filesystem is read-only and PYTHONDONTWRITEBYTECODE
is set).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["main", "trim"]

# What the service never loads, by cut (globs relative to site-packages; folders and files).
CUTS: dict[str, tuple[str, ...]] = {
    "pyarrow C++ headers and Cython sources": (
        "pyarrow/include", "pyarrow/includes", "pyarrow/src", "pyarrow/*.pyx", "pyarrow/*.pxd", "pyarrow/*.pxi",
        "pyarrow/**/*.h", "pyarrow/**/*.cc", "pyarrow/*.cpp",
    ),
    "pyarrow Arrow Flight": (
        "pyarrow/libarrow_flight.so*", "pyarrow/libarrow_python_flight.so*", "pyarrow/_flight.*.so",
        "pyarrow/flight.py",
    ),
    "pyarrow S3 filesystem": ("pyarrow/libarrow_s3.so*", "pyarrow/_s3fs.*.so"),
    "pyarrow C++ test module": ("pyarrow/_pyarrow_cpp_tests.*.so",),
    # The C API library for C/C++ programs: the Python module (onnxruntime_pybind11_state) holds the runtime
    # itself, neither links nor names it.
    "onnxruntime C API library": ("onnxruntime/capi/libonnxruntime.so.*",),
    "onnxruntime Python tooling": (
        "onnxruntime/transformers", "onnxruntime/quantization", "onnxruntime/tools", "onnxruntime/datasets",
    ),
    "numpy f2py, C headers, static libraries": (
        "numpy/f2py", "numpy/_core/include", "numpy/_core/lib", "numpy/_pyinstaller",
    ),
}
# Console scripts of what was removed (relative to the venv's bin/).
UNUSED_SCRIPTS = ("f2py", "numpy-config")


def _site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if len(found) != 1:
        raise SystemExit(f"{venv}: expected one lib/python3*/site-packages folder, found {found}: pass the venv root")
    return found[0]


def _remove(path: Path) -> int:
    """Remove a file, symlink or folder; returns the bytes freed."""
    if path.is_symlink() or path.is_file():
        size = 0 if path.is_symlink() else path.stat().st_size
        path.unlink()
        return size
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    shutil.rmtree(path)
    return size


def _dedupe_libraries(folder: Path) -> int:
    """Replace byte-identical copies of one library under its names (libx.so, libx.so.26, libx.so.26.1.0: a
    wheel cannot hold symlinks) with symlinks to the longest name."""
    freed = 0
    by_content: dict[tuple[str, str], Path] = {}
    for lib in sorted(folder.glob("lib*.so*"), key=lambda p: (-len(p.name), p.name)):
        if lib.is_symlink() or not lib.is_file():
            continue
        key = (lib.name.split(".so", 1)[0], hashlib.sha256(lib.read_bytes()).hexdigest())
        target = by_content.setdefault(key, lib)
        if target is not lib:
            freed += lib.stat().st_size
            lib.unlink()
            lib.symlink_to(target.name)
    return freed


def _strip(site: Path) -> int:
    """strip --strip-unneeded every native module and library outside the auditwheel *.libs folders."""
    strip = shutil.which("strip")
    if strip is None:
        raise SystemExit("strip is missing: install binutils in the build stage (see the Dockerfile)")
    freed = 0
    for binary in sorted(site.rglob("*.so*")):
        if binary.is_symlink() or not binary.is_file() or any(p.endswith(".libs") for p in binary.parts):
            continue
        before = binary.stat().st_size
        subprocess.run([strip, "--strip-unneeded", str(binary)], check=True)  # noqa: S603
        freed += before - binary.stat().st_size
    return freed


def trim(venv: Path) -> dict[str, int]:
    """Trim `venv` in place; returns the bytes freed by each cut."""
    site = _site_packages(venv)
    freed = {"test suites (tests/ folders)": 0}
    for tests in sorted(site.rglob("tests"), key=lambda p: len(p.parts)):
        if tests.is_dir():
            freed["test suites (tests/ folders)"] += _remove(tests)
    for cut, patterns in CUTS.items():
        freed[cut] = sum(_remove(path) for pattern in patterns for path in sorted(site.glob(pattern)) if path.exists())
    for script in UNUSED_SCRIPTS:
        if (venv / "bin" / script).exists():
            freed["numpy f2py, C headers, static libraries"] += _remove(venv / "bin" / script)
    freed["pyarrow libarrow_python copies (symlinked)"] = _dedupe_libraries(site / "pyarrow")
    freed["debug symbols (strip)"] = _strip(site)
    return freed


def _report(venv: Path) -> None:
    site = _site_packages(venv)
    sizes: dict[str, int] = {}
    for path in site.rglob("*"):
        if path.is_file() and not path.is_symlink():
            top = path.relative_to(site).parts[0]
            sizes[top] = sizes.get(top, 0) + path.stat().st_size
    total = sum(p.stat().st_size for p in venv.rglob("*") if p.is_file() and not p.is_symlink())
    print(f"{venv}: {total / 1e6:.0f} MB; largest in site-packages:")
    for name, size in sorted(sizes.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {size / 1e6:7.1f} MB  {name}")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: trim_venv.py VENV (the venv root, e.g. /opt/fusionrank)", file=sys.stderr)
        return 2
    venv = Path(argv[0])
    freed = trim(venv)
    print(f"freed: {sum(freed.values()) / 1e6:.1f} MB")
    for cut, size in freed.items():
        print(f"  {size / 1e6:7.1f} MB  {cut}")
    _report(venv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
