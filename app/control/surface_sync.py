"""One file-watcher pass over one surface folder, applied under the policy registry's lock.

Reloads changed policy files, follows a changed `active`, `shadow` or `bundle` (pin) file, and installs
the resulting route. With a pin, the active policy is rebound to the pinned model and calibration; a
pin (or an active policy) that does not validate against the pinned triple is refused and the surface
keeps serving what it served.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from app.control.audit import PolicyChange, audit
from app.control.loader import read_active_version
from app.control.pins import PIN_FILE, BundlePin, read_pin
from app.control.pointers import ACTIVE_FILE, SHADOW_FILE, read_pointer
from app.control.warmup import dry_run, validate_policy_file
from app.errors import ArtifactError, FusionrankError
from app.serving.bundle import PolicyBinding, SurfaceRoute

if TYPE_CHECKING:
    from app.control.registry import PolicyRegistry

__all__ = ["WATCHER", "SurfaceSync"]

log = logging.getLogger("fusionrank.registry")

WATCHER = "watcher"  # the `who` of changes the file watcher applies


class SurfaceSync:
    """One watcher pass over one surface folder (runs under the registry's lock)."""

    def __init__(self, registry: PolicyRegistry, surface: str, changed: set[str]) -> None:
        self.registry = registry
        self.surface = surface
        self.changed = changed
        self.dir = registry.folder / surface
        self.snapshot = registry._state.snapshot
        self.route = self.snapshot.surfaces.get(surface)
        self.versions: dict[str, PolicyBinding] = dict(self.route.versions) if self.route else {}
        self.active = self.route.active if self.route else None
        self.shadow = self.route.shadow if self.route else None
        self.pin = self.route.pin if self.route else None
        self.cache = registry._cache()
        self.changes: list[PolicyChange] = []

    def run(self) -> list[PolicyChange]:
        reg = self.registry
        names = set(self.changed)
        if self.route is None:  # a surface not served yet: every file counts as new
            names |= {p.name for p in self.dir.glob("*.yaml")}
        for name in sorted(n for n in names if n.endswith(".yaml")):
            self._reload(name.removesuffix(".yaml"))
        if ACTIVE_FILE in self.changed or self.route is None:
            self._follow(ACTIVE_FILE, "activate", self._read_active)
        if SHADOW_FILE in self.changed:
            self._follow(SHADOW_FILE, "shadow", lambda: read_pointer(self.dir, SHADOW_FILE))
        if self.active is None:
            log.error("surface %r has no servable active policy yet; not served", self.surface)
            return self.changes
        if not self._repin():
            return self.changes
        route = self.route
        unchanged = route is not None and (route.active, route.shadow) == (self.active, self.shadow) and (
            route.versions.keys() == self.versions.keys()
            and all(route.versions[v] is b for v, b in self.versions.items())
        )
        # This surface's load problems (shown by /readyz) are now its refused files, nothing older.
        prefix = f"{self.dir}/"
        problems = tuple(p for p in self.snapshot.problems if not p.startswith(prefix)) + tuple(
            reg._rejected.get(self.surface, {}).values()
        )
        if not unchanged or problems != self.snapshot.problems:
            route = SurfaceRoute(self.surface, self.active, self.versions, self.shadow, pin=self.pin)
            if self.route is not None:  # keep the canary and the shadow model as they are
                route = replace(
                    self.route, active=self.active, versions=self.versions, shadow=self.shadow, pin=self.pin
                )
            reg._install(self.snapshot, route, self.cache.bundles, problems)
        return self.changes

    def _repin(self) -> bool:
        """Bind the active policy to the surface's pin (when there is one); False: refused, nothing changes."""
        reg, active = self.registry, self.active
        assert active is not None
        before = self.pin
        try:
            pin = read_pin(self.dir) if PIN_FILE in self.changed or self.route is None else self.pin
            if pin is None and before is None:
                return True
            if pin == before and self.route is not None and self.route.active == active and (
                self.versions.get(active) is self.route.versions.get(active)
            ):
                return True  # neither the pin, the active version nor its file changed
            path = self.dir / f"{active}.yaml"
            binding, _ = validate_policy_file(path, self.cache, surface=self.surface, pin=pin)
        except FusionrankError as exc:
            self.changes.append(reg._refused(self.surface, "pin", "watch", WATCHER, _pin_text(before), exc,
                                             after=active))
            log.error("bundle pin refused, the surface keeps what it serves: %s", exc.message)
            return False
        self.versions[active] = binding
        self.pin = pin
        if pin != before:
            self.changes.append(reg._applied(self.surface, "pin", "watch", WATCHER, _pin_text(before), _pin_text(pin)))
        return True

    def _read_active(self) -> str | None:
        return read_active_version(self.dir)

    def _reload(self, version: str) -> None:
        reg, path = self.registry, self.dir / f"{version}.yaml"
        if not path.exists():
            if version in (self.active, self.shadow):
                log.error("%s was removed but is the %s version; it stays loaded until the pointer moves",
                          path, "active" if version == self.active else "shadow")
            else:
                self.versions.pop(version, None)
                log.info("%s was removed; version %r is no longer servable", path, version)
            reg._rejected.get(self.surface, {}).pop(version, None)
            return
        try:
            binding, _ = validate_policy_file(path, self.cache, surface=self.surface)
        except FusionrankError as exc:
            reg._rejected.setdefault(self.surface, {})[version] = exc.message
            reg._state.metrics.policy_file_rejections.labels(self.surface).inc()
            served = "the previously loaded version stays" if version in self.versions else "not servable"
            log.error("policy file refused (%s): %s", served, exc.message)
            self.changes.append(audit(PolicyChange(
                self.surface, "load", "watch", WATCHER, version if version in self.versions else None, version,
                "refused", error=exc.message,
            )))
            return
        reg._rejected.get(self.surface, {}).pop(version, None)
        before = version if version in self.versions else None
        self.versions[version] = binding
        # The served policy's content changed: that is a switch too. Another version only becomes
        # servable (pinnable) in its new form: audited, not counted as an activation.
        action = "reload" if version == self.active else "load"
        self.changes.append(reg._applied(self.surface, action, "watch", WATCHER, before, version, changed=True))

    def _follow(self, pointer: str, action: str, read: Callable[[], str | None]) -> None:
        reg = self.registry
        before = self.active if pointer == ACTIVE_FILE else self.shadow
        wanted: str | None = None
        try:
            wanted = read()
            if wanted is not None and wanted not in self.versions:
                why = reg._rejected.get(self.surface, {}).get(wanted, "no such file")
                raise ArtifactError(self.dir / pointer, "", f"version {wanted!r} is not servable: {why}",
                                    f"fix {wanted}.yaml or point to one of {sorted(self.versions)}")
            if wanted is not None and wanted != before:
                binding = self.versions[wanted]
                dry_run(binding, self.surface, self.dir / f"{wanted}.yaml")
        except FusionrankError as exc:
            self.changes.append(reg._refused(self.surface, action, "watch", WATCHER, before, exc, after=wanted))
            log.error("pointer change refused, %r stays: %s", before, exc.message)
            return
        if wanted == before:
            return
        if pointer == ACTIVE_FILE:
            if self.active is not None:
                reg._remember(self.surface, self.active)
            self.active = wanted
        else:
            self.shadow = wanted
        self.changes.append(reg._applied(self.surface, action, "watch", WATCHER, before, wanted))


def _pin_text(pin: BundlePin | None) -> str | None:
    return None if pin is None else f"model {pin.model_version}, calibration {pin.calibration_version}"
