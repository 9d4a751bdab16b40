"""Keep artifact paths inside their root: no `..`, no absolute names, no symlink out of the store."""

from __future__ import annotations

from pathlib import Path

from app.errors import ArtifactError

__all__ = ["confined"]


def confined(root: Path, path: Path) -> Path:
    """`path` with symlinks resolved, when it stays under `root` (also resolved); else `ArtifactError`.

    Symlinks that stay inside the root are fine (a Kubernetes ConfigMap mount is made of them).
    """
    resolved_root = root.resolve()
    resolved = path.resolve()
    if not resolved.is_relative_to(resolved_root):
        raise ArtifactError(
            path, "", f"resolves to {resolved}, outside {resolved_root}",
            "keep artifact files (and the targets of their symlinks) inside the store folder",
        )
    return resolved
