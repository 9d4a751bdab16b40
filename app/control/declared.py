"""Read and write a surface's declared rollout file under an exclusive lock, compare-and-swap on its generation.

Writers (the admin API of any replica or worker) take an exclusive `flock` on the surface folder
itself (`policies/<surface>/`: no lock file to create or leave behind) around read -> check ->
validate -> write, so of two writers that read the same generation exactly one wins; the other learns
the current generation (409). The file is replaced atomically (temporary file, fsync, rename): a
watcher never reads half a file.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.artifacts.rollout import ROLLOUT_FILE, RolloutState, dump_rollout, load_rollout
from app.control.pointers import write_atomically
from app.errors import Conflict

__all__ = ["check_generation", "locked", "read_declared", "write_declared"]


def read_declared(surface_dir: Path) -> RolloutState | None:
    """The surface's declared state; None when it has no rollout file yet (it serves its pointer files)."""
    path = surface_dir / ROLLOUT_FILE
    if not path.exists():
        return None
    return load_rollout(path)


@contextmanager
def locked(surface_dir: Path) -> Iterator[None]:
    """Hold the surface's exclusive write lock (blocks until the other writer is done); raises OSError
    when the folder is read-only (nothing could be written under the lock anyway)."""
    if not os.access(surface_dir, os.W_OK):
        raise PermissionError(f"{surface_dir} is not writable")
    fd = os.open(surface_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def check_generation(surface: str, current: int, expected: int | None) -> None:
    """Compare-and-swap: a writer that read another generation than the current one is refused (409)."""
    if expected is not None and expected != current:
        raise Conflict(
            f"surface {surface!r} is at rollout generation {current}, not {expected}: someone else changed it;"
            f" read GET /admin/rollouts/{surface} and retry with expected_generation={current}"
        )


def write_declared(surface_dir: Path, state: RolloutState) -> None:
    """Replace the rollout file atomically (temp + fsync + rename); raises OSError on a read-only folder."""
    write_atomically(surface_dir / ROLLOUT_FILE, dump_rollout(state))
