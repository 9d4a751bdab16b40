"""Write what the registry serves back to the surface folder, so restarts and other replicas follow.

The `active` and `shadow` pointers and the `bundle` pin are replaced atomically (see
`app.control.pointers`). On a read-only folder (a ConfigMap) or with `persist_pointers` off, nothing
is written and the change is served from this process's memory until the files themselves change;
each write answers whether it persisted (the `persisted` field of the audit line).
"""

from __future__ import annotations

import logging
from pathlib import Path

from app.control.pins import remove_pin, write_pin
from app.control.pointers import ACTIVE_FILE, remove_pointer, write_pointer
from app.serving.bundle import BundlePin

__all__ = ["SurfaceFiles"]

log = logging.getLogger("fusionrank.registry")


class SurfaceFiles:
    """The pointer files of the surfaces under `policies` (written only when `enabled`)."""

    def __init__(self, policies: Path, *, enabled: bool) -> None:
        self.policies = policies
        self.enabled = enabled

    def write_pointer(self, surface: str, pointer: str, version: str | None) -> bool:
        """Point `pointer` (`active`/`shadow`) at `version` (None: remove it); False when not written."""
        if not self.enabled:
            return False
        surface_dir = self.policies / surface
        try:
            if version is None:
                remove_pointer(surface_dir, pointer)
            else:
                write_pointer(surface_dir, pointer, version)
        except OSError as exc:
            log.warning("could not write %s (%s); the change is served from memory only until the pointer"
                        " file changes or the process restarts", surface_dir / pointer, exc)
            return False
        return True

    def write_triple(self, surface: str, version: str, pin: BundlePin | None, *, with_pin: bool) -> bool:
        """Write the pin (when `with_pin`; None removes it), then the active pointer. A watcher that reads
        between the two sees the old policy on the new pin, which was validated too, or refuses it and
        catches up at the next poll."""
        if not self.enabled:
            return False
        if with_pin:
            surface_dir = self.policies / surface
            try:
                if pin is None:
                    remove_pin(surface_dir)
                else:
                    write_pin(surface_dir, pin)
            except OSError as exc:
                log.warning("could not write the pin of %s (%s); the change is served from memory only",
                            surface_dir, exc)
                return False
        return self.write_pointer(surface, ACTIVE_FILE, version)
