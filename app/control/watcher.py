"""Watch the policies folder and hand what changed to the registry (the Kubernetes ConfigMap case).

Polling, not inotify: a ConfigMap volume updates by writing a new hidden folder and swapping the
`..data` symlink, which inotify on the visible names does not report. Each poll hashes the
contents of `<surface>/*.yaml`, `<surface>/active`, `<surface>/shadow` and `<surface>/bundle` (the
model/calibration pin, see `app.control.pins`; following symlinks); a file whose hash differs from
the previous poll is "changed", and `Registry.sync` applies the pass. Files are tiny, so a poll
costs well under a millisecond per surface; a file far larger than any artifact is hashed by its
first bytes and its size only. A file caught half-written is refused, then picked up complete at
the next poll (write files elsewhere and `mv` them in to avoid the noise).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

from app.artifacts.safe_yaml import MAX_YAML_BYTES
from app.control.audit import PolicyChange
from app.control.loader import surface_dirs
from app.control.pins import PIN_FILE
from app.control.pointers import ACTIVE_FILE, SHADOW_FILE
from app.control.registry import Registry
from app.control.remote_store import RemoteStore

__all__ = ["Fingerprint", "PolicyWatcher", "changed_files", "fingerprint"]

log = logging.getLogger("fusionrank.watcher")

# surface -> file name -> sha256 of its contents ("" when it cannot be read)
Fingerprint = dict[str, dict[str, str]]


def fingerprint(policies: Path) -> Fingerprint:
    """Hash every file the registry reads under `policies`."""
    if not policies.is_dir():
        return {}
    out: Fingerprint = {}
    for surface_dir in surface_dirs(policies):
        files: dict[str, str] = {}
        pointers = [surface_dir / ACTIVE_FILE, surface_dir / SHADOW_FILE, surface_dir / PIN_FILE]
        for path in [*surface_dir.glob("*.yaml"), *pointers]:
            try:
                if not path.is_file():  # a directory, a FIFO, a device: never opened; the loader names it
                    if path.exists():
                        files[path.name] = ""
                    continue
                with path.open("rb") as handle:  # bounded: an oversize file is refused by the loader anyway
                    head = handle.read(MAX_YAML_BYTES + 1)
                    size = path.stat().st_size
                files[path.name] = hashlib.sha256(head + size.to_bytes(8, "big")).hexdigest()
            except FileNotFoundError:
                continue
            except OSError:  # unreadable, or a directory: the loader names the problem
                files[path.name] = ""
        out[surface_dir.name] = files
    return out


def changed_files(before: Fingerprint, now: Fingerprint) -> dict[str, set[str]]:
    """surface -> names of its files that differ between two polls (surfaces still present only)."""
    out: dict[str, set[str]] = {}
    for surface in sorted(now):
        old, new = before.get(surface, {}), now[surface]
        changed = {name for name in old.keys() | new.keys() if old.get(name) != new.get(name)}
        if changed:
            out[surface] = changed
    return out


class PolicyWatcher:
    """Poll `policies` every `interval` seconds in a daemon thread; `poll_once` does one pass."""

    def __init__(
        self, registry: Registry, policies: Path, interval: float, *, baseline: Fingerprint | None = None,
        mirror: RemoteStore | None = None,
    ) -> None:
        self.registry = registry
        self.mirror = mirror  # object-store URIs: refresh their local mirror before each pass
        self.policies = policies
        self.interval = interval
        self._seen = fingerprint(policies) if baseline is None else baseline
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> list[PolicyChange]:
        """Compare the folder with the previous poll and have the registry sync every surface that changed.
        The fingerprint moves on even when a surface's pass fails, so a later edit is a new change."""
        with self._poll_lock:
            if self.mirror is not None:
                self.mirror.sync()
            current = fingerprint(self.policies)
            changed = changed_files(self._seen, current)
            for surface, names in changed.items():
                log.info("policies/%s changed: %s", surface, sorted(names))
            for surface in sorted(self._seen.keys() - current.keys()):
                log.warning("policies/%s disappeared; what it served stays served until restart", surface)
            self._seen = current
            return self.registry.sync(changed)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fusionrank-policy-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll_once()
            except Exception:  # a watcher that dies silently is worse than one that logs and retries
                log.exception("policy watch pass failed; retrying at the next poll")
