"""One file-watcher pass over one surface folder: what changed on disk, turned into the route to serve.

Reloads changed policy files, follows a changed `active`, `shadow` or `bundle` (pin) file, and works
out the resulting route. With a pin, the active policy is rebound to the pinned model and calibration;
a pin (or an active policy) that does not validate against the pinned triple is refused and the surface
keeps serving what it served. A pass only reads files and validates bindings: it installs nothing and
audits nothing itself. The registry runs it under its lock, then installs `SyncResult.route` and
audits `SyncResult.changes` (see `Registry.sync`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from app.artifacts.rollout import ROLLOUT_FILE
from app.control.audit import PolicyChange
from app.control.loader import BundleCache, read_active_version
from app.control.pins import PIN_FILE, read_pin
from app.control.pointers import ACTIVE_FILE, SHADOW_FILE, read_pointer
from app.control.warmup import GoldenBatch
from app.errors import ArtifactError, FusionrankError
from app.serving.bundle import BundlePin, PolicyBinding, SurfaceRoute

__all__ = ["WATCHER", "SurfaceSync", "SyncResult"]

log = logging.getLogger("fusionrank.registry")

WATCHER = "watcher"  # the `who` of changes the file watcher applies


@dataclass(slots=True)
class SyncResult:
    """What a pass found: the route to install (None: nothing to install), the surface's problems, the
    changes to audit (applied, unchanged or refused) and the surface's refused files (version -> why)."""

    route: SurfaceRoute | None = None
    problems: tuple[str, ...] = ()
    changes: list[PolicyChange] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)


class SurfaceSync:
    """One watcher pass over `surface_dir`, starting from `route` (None: the surface is not served yet)."""

    def __init__(
        self, surface_dir: Path, route: SurfaceRoute | None, changed: set[str], *, cache: BundleCache,
        golden: GoldenBatch, problems: tuple[str, ...], rejected: dict[str, str],
    ) -> None:
        self.surface = surface_dir.name
        self.dir = surface_dir
        self.route = route
        self.changed = changed
        self.cache = cache
        self.golden = golden
        self.problems = problems  # the snapshot's problems, every surface's
        self.rejected = dict(rejected)
        self.versions: dict[str, PolicyBinding] = dict(route.versions) if route else {}
        self.active = route.active if route else None
        self.shadow = route.shadow if route else None
        self.pin = route.pin if route else None
        self.changes: list[PolicyChange] = []
        self.touched: set[str] = set()  # the files this pass read again

    def run(self) -> SyncResult:
        names = set(self.changed)
        if self.route is None:  # a surface not served yet: every file counts as new
            names |= {p.name for p in self.dir.glob("*.yaml")}
        for name in sorted(n for n in names if n.endswith(".yaml") and n != ROLLOUT_FILE):
            self._reload(name.removesuffix(".yaml"))
        if ACTIVE_FILE in self.changed or self.route is None:
            self._follow(ACTIVE_FILE, "activate", lambda: read_active_version(self.dir))
        if SHADOW_FILE in self.changed:
            self._follow(SHADOW_FILE, "shadow", lambda: read_pointer(self.dir, SHADOW_FILE))
        result = SyncResult(changes=self.changes, rejected=self.rejected)
        if self.active is None:
            log.error("surface %r has no servable active policy yet; not served", self.surface)
            return result
        if not self._repin():
            return result
        route = self.route
        unchanged = route is not None and (route.active, route.shadow) == (self.active, self.shadow) and (
            route.versions.keys() == self.versions.keys()
            and all(route.versions[v] is b for v, b in self.versions.items())
        )
        problems = self._problems()
        if not unchanged or problems != self.problems:
            new = SurfaceRoute(self.surface, self.active, self.versions, self.shadow, pin=self.pin)
            if route is not None:  # keep the canary and the shadow model as they are
                new = replace(route, active=self.active, versions=self.versions, shadow=self.shadow, pin=self.pin)
            result.route, result.problems = new, problems
        return result

    def _problems(self) -> tuple[str, ...]:
        """The snapshot's problems (shown by /readyz) after this pass: a problem of a file this pass read
        again is replaced by what the pass found; one of a file it did not read stays as it was (a bad
        file refused at start-up is still named after an unrelated edit)."""
        prefix = f"{self.dir}/"
        resolved = set(self.touched)
        if self.route is None:  # an unserved surface is served now: its pointer problems are resolved
            resolved |= {ACTIVE_FILE, SHADOW_FILE, PIN_FILE}

        def file_of(problem: str) -> str:
            return problem[len(prefix):].split(":", 1)[0]

        kept = tuple(p for p in self.problems if not (p.startswith(prefix) and file_of(p) in resolved))
        fresh = tuple(why for version, why in sorted(self.rejected.items()) if f"{version}.yaml" in self.touched)
        return kept + fresh

    def _applied(self, action: str, before: str | None, after: str | None, *, changed: bool | None = None) -> None:
        served = before != after if changed is None else changed
        outcome = "applied" if served else "unchanged"
        self.changes.append(PolicyChange(self.surface, action, "watch", WATCHER, before, after, outcome))

    def _refused(self, action: str, before: str | None, after: str | None, error: FusionrankError) -> None:
        self.changes.append(PolicyChange(self.surface, action, "watch", WATCHER, before, after, "refused",
                                         error=error.message))

    def _repin(self) -> bool:
        """Bind the active policy to the surface's pin (when there is one); False: refused, nothing changes."""
        active = self.active
        assert active is not None
        before = self.pin
        try:
            if PIN_FILE in self.changed or self.route is None:
                self.touched.add(PIN_FILE)
                pin = read_pin(self.dir)
            else:
                pin = self.pin
            if pin is None and before is None:
                return True
            if pin == before and self.route is not None and self.route.active == active and (
                self.versions.get(active) is self.route.versions.get(active)
            ):
                return True  # neither the pin, the active version nor its file changed
            path = self.dir / f"{active}.yaml"
            binding, _ = self.golden.validate(path, self.cache, surface=self.surface, pin=pin)
        except FusionrankError as exc:
            self._refused("pin", _pin_text(before), active, exc)
            log.error("bundle pin refused, the surface keeps what it serves: %s", exc.message)
            return False
        self.versions[active] = binding
        self.pin = pin
        if pin != before:
            self._applied("pin", _pin_text(before), _pin_text(pin))
        return True

    def _reload(self, version: str) -> None:
        path = self.dir / f"{version}.yaml"
        self.touched.add(path.name)
        if not path.exists():
            if version in (self.active, self.shadow):
                log.error("%s was removed but is the %s version; it stays loaded until the pointer moves",
                          path, "active" if version == self.active else "shadow")
            else:
                self.versions.pop(version, None)
                log.info("%s was removed; version %r is no longer servable", path, version)
            self.rejected.pop(version, None)
            return
        try:
            binding, _ = self.golden.validate(path, self.cache, surface=self.surface)
        except FusionrankError as exc:
            self.rejected[version] = exc.message
            served = "the previously loaded version stays" if version in self.versions else "not servable"
            log.error("policy file refused (%s): %s", served, exc.message)
            self._refused("load", version if version in self.versions else None, version, exc)
            return
        self.rejected.pop(version, None)
        before = version if version in self.versions else None
        self.versions[version] = binding
        # The served policy's content changed: that is a switch too. Another version only becomes
        # servable (pinnable) in its new form: audited, not counted as an activation.
        self._applied("reload" if version == self.active else "load", before, version, changed=True)

    def _follow(self, pointer: str, action: str, read: Callable[[], str | None]) -> None:
        before = self.active if pointer == ACTIVE_FILE else self.shadow
        self.touched.add(pointer)
        wanted: str | None = None
        try:
            wanted = read()
            if wanted is not None and wanted not in self.versions:
                why = self.rejected.get(wanted, "no such file")
                raise ArtifactError(self.dir / pointer, "", f"version {wanted!r} is not servable: {why}",
                                    f"fix {wanted}.yaml or point to one of {sorted(self.versions)}")
            if wanted is not None and wanted != before:
                self.golden.dry_run(self.versions[wanted], self.surface, self.dir / f"{wanted}.yaml")
        except FusionrankError as exc:
            self._refused(action, before, wanted, exc)
            log.error("pointer change refused, %r stays: %s", before, exc.message)
            return
        if wanted == before:
            return
        if pointer == ACTIVE_FILE:
            self.active = wanted
        else:
            self.shadow = wanted
        self._applied(action, before, wanted)


def _pin_text(pin: BundlePin | None) -> str | None:
    return None if pin is None else f"model {pin.model_version}, calibration {pin.calibration_version}"
