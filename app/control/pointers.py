"""Pointer files of a surface folder: `active` (the served version) and `shadow` (ranked alongside).

A pointer is one line holding a version name. Writes are atomic (a temporary file in the same
folder, then `os.replace`), so a reader — another replica's watcher — never sees half a pointer.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from app.artifacts.loading import read_artifact_text
from app.errors import ArtifactError

__all__ = [
    "ACTIVE_FILE",
    "MAX_POINTER_BYTES",
    "SHADOW_FILE",
    "VERSION_PATTERN",
    "read_pointer",
    "remove_pointer",
    "write_atomically",
    "write_pointer",
]

ACTIVE_FILE = "active"
SHADOW_FILE = "shadow"
MAX_POINTER_BYTES = 4096  # one version name, or the pin's one-line JSON object
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


def read_pointer(surface_dir: Path, name: str) -> str | None:
    """The version a pointer file names; None when the file is absent or empty."""
    path = surface_dir / name
    if not path.exists():  # absent (or a dangling symlink): no pointer
        return None
    version = read_artifact_text(path, MAX_POINTER_BYTES, "pointer file").strip()
    if not version:
        return None
    if not VERSION_PATTERN.match(version):
        raise ArtifactError(path, "", f"{version!r} is not a version name", "write one version, e.g. `3`")
    return version


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` via a temp file in the same folder and `os.replace`, so a reader never
    sees half a file; raises OSError when the folder is read-only (e.g. a ConfigMap)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; the file is as readable as the policies
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_pointer(surface_dir: Path, name: str, version: str) -> None:
    """Replace the pointer atomically; raises OSError when the folder is read-only (e.g. a ConfigMap)."""
    write_atomically(surface_dir / name, version + "\n")


def remove_pointer(surface_dir: Path, name: str) -> None:
    (surface_dir / name).unlink(missing_ok=True)
