"""Read and write a surface's declared rollout file under an exclusive lock, compare-and-swap on its generation.

Writers (the admin API of any replica or worker) take an exclusive `flock` on the surface folder
itself (`policies/<surface>/`: no lock file to create or leave behind) around read -> check ->
validate -> write, so of two writers that read the same generation exactly one wins; the other learns
the current generation (409). The file is replaced atomically (temporary file, fsync, rename): a
watcher never reads half a file.

When the policies live in an object store (FUSIONRANK_POLICIES=s3://...), the folder is this replica's
mirror: the lock still orders this replica's workers, but two replicas do not share it. There the file is
read from the store with its ETag and written back with a conditional PUT (`If-Match` on that ETag,
`If-None-Match: *` for the first file): the store applies at most one of two writes that read the same
object, and the other writer gets the 409 naming the generation that won (`DeclaredFiles`).
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from app.artifacts.loading import parse_artifact
from app.artifacts.rollout import ROLLOUT_FILE, RolloutState, dump_rollout, load_rollout
from app.artifacts.safe_yaml import MAX_YAML_BYTES, YamlTooDeep, YamlTooLarge, load_bounded_yaml
from app.control.pointers import write_atomically
from app.errors import ArtifactError, Conflict

__all__ = [
    "DeclaredFiles", "DeclaredWrite", "check_generation", "locked", "parse_declared", "read_declared", "write_declared",
]

log = logging.getLogger("fusionrank.registry")


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


def parse_declared(data: bytes, where: str) -> RolloutState:
    """A rollout file's bytes read from an object store, validated as `load_rollout` validates a file."""
    path = Path(where)
    if len(data) > MAX_YAML_BYTES:
        raise ArtifactError(path, "", f"{len(data)} bytes, more than {MAX_YAML_BYTES}", "write a rollout file"
                            " through the admin API")
    try:
        parsed = load_bounded_yaml(data.decode("utf-8"))
    except (UnicodeDecodeError, YamlTooDeep, YamlTooLarge, yaml.YAMLError) as exc:
        raise ArtifactError(path, "", f"unreadable rollout file ({exc})", "write it through the admin API"
                            " or fix its YAML") from None
    return parse_artifact(RolloutState, parsed, path)


class DeclaredWrite:
    """One admin change's view of a surface's rollout file: `current` as read under the lock, then `write`."""

    def __init__(self, surface_dir: Path, uri: str | None) -> None:
        self.surface_dir = surface_dir
        self.uri = uri
        self._version: str | None = None  # the object's ETag when read from a store
        if uri is None:
            self.current = read_declared(surface_dir)
            return
        from app.control.remote_store import read_versioned  # fsspec only when the store is remote

        data, self._version = read_versioned(uri)
        self.current = None if data is None else parse_declared(data, uri)

    def write(self, state: RolloutState) -> None:
        """Write `state` (one generation on from `current`). Local: atomic rename under the lock (OSError on
        a read-only folder). Object store: a conditional PUT; when another writer's PUT landed first, a 409
        naming the generation now in the store, and nothing is written."""
        text = dump_rollout(state)
        if self.uri is not None:
            from app.control.remote_store import read_versioned, write_if_unchanged

            if not write_if_unchanged(self.uri, text.encode(), self._version):
                data, _ = read_versioned(self.uri)
                now = "no rollout file" if data is None else (
                    f"rollout generation {parse_declared(data, self.uri).generation}")
                read = 0 if self.current is None else self.current.generation
                raise Conflict(
                    f"surface {self.surface_dir.name!r}: {self.uri} changed while this change was checked (read at"
                    f" generation {read}, now {now}): another admin's write won; read GET"
                    f" /admin/rollouts/{self.surface_dir.name} and retry with the generation it shows"
                )
            try:  # the store has it: the mirror's copy is a convenience its next pass would bring anyway
                write_atomically(self.surface_dir / ROLLOUT_FILE, text)
            except OSError as exc:
                log.warning("%s written; its mirror %s was not (%s): the next pass copies it", self.uri,
                            self.surface_dir / ROLLOUT_FILE, exc)
            return
        write_atomically(self.surface_dir / ROLLOUT_FILE, text)


class DeclaredFiles:
    """Where admin changes read and write rollout files: the local policies folder, or (`uri` set) the object
    store the folder mirrors."""

    def __init__(self, policies: Path, uri: str | None = None) -> None:
        self.policies = policies
        self.uri = uri.rstrip("/") if uri is not None else None

    @contextmanager
    def writing(self, surface: str) -> Iterator[DeclaredWrite]:
        """Hold the surface's lock and read its rollout file; raises OSError when the folder is read-only."""
        surface_dir = self.policies / surface
        with locked(surface_dir):
            uri = None if self.uri is None else f"{self.uri}/{surface}/{ROLLOUT_FILE}"
            yield DeclaredWrite(surface_dir, uri)
