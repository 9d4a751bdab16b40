"""The policy registry: validated, dry-run and audited switches of the policy each surface serves.

The policies folder is the source of truth for policy *files*; the serving snapshot is the truth
for what is *served*. Every change — admin API or file watcher — runs under one lock and goes:
read the file, validate it (schema, model, calibration), dry-run it on the golden batch, build a
new immutable `ServingSnapshot` that reuses the loaded model bundles (no ONNX reload), and swap
`state.snapshot` by one reference assignment. A request that already read the old snapshot
finishes on it. Any failure leaves the old snapshot in place and is audited and counted.

API changes are written back to the `active`/`shadow` pointer files (atomic replace) when the
folder is writable, so that a restart and the other replicas' watchers agree; on a read-only
folder (a ConfigMap) they stay in memory until the pointer file itself changes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from app.api.state import ServiceState
from app.control.audit import PolicyChange, audit
from app.control.loader import BundleCache
from app.control.pins import BundlePin
from app.control.pointers import ACTIVE_FILE, SHADOW_FILE, VERSION_PATTERN, remove_pointer, write_pointer
from app.control.surface_sync import WATCHER, SurfaceSync
from app.control.warmup import DryRun, validate_policy_file
from app.errors import Conflict, FusionrankError, InvalidRequest, NotFound
from app.serving.bundle import ModelBundle, PolicyBinding, ServingSnapshot, SurfaceRoute

__all__ = ["WATCHER", "PolicyRegistry"]

log = logging.getLogger("fusionrank.registry")

_HISTORY = 32  # previous active versions remembered per surface, for rollback


class PolicyRegistry:
    """Every change of the served policies goes through here (admin API and file watcher alike)."""

    def __init__(self, state: ServiceState) -> None:
        self._state = state
        self._settings = state.settings
        self._lock = threading.Lock()
        self._history: dict[str, list[str]] = {}  # surface -> previous active versions, latest last
        self._rejected: dict[str, dict[str, str]] = {}  # surface -> version -> why its file was refused

    @property
    def folder(self) -> Path:
        return self._settings.policies

    # -- admin API -------------------------------------------------------------------------------

    def activate(self, surface: str, version: str, *, who: str) -> PolicyChange:
        """Validate, dry-run and serve `version` on `surface`; the previous active one can be rolled back to."""
        with self._lock:
            return self._api_switch(surface, version, who=who, action="activate")

    def rollback(self, surface: str, *, who: str) -> PolicyChange:
        """Serve the version that was active before the last activation (validated and dry-run again)."""
        with self._lock:
            route = self._state.snapshot.route(surface)
            history = self._history.get(surface)
            if not history:
                error = Conflict(
                    f"surface {surface!r} has no previous policy version in this process to roll back to;"
                    " activate a version by name instead"
                )
                self._refused(surface, "rollback", "api", who, route.active, error)
                raise error
            change = self._api_switch(surface, history[-1], who=who, action="rollback")
            history.pop()  # only once the rollback is served
            return change

    def set_shadow(self, surface: str, version: str | None, *, who: str) -> PolicyChange:
        """Rank `version` alongside the active policy of `surface` (None: stop shadowing)."""
        with self._lock:
            snapshot = self._state.snapshot
            route = snapshot.route(surface)
            bundles: Mapping[str, ModelBundle] = {}
            versions = route.versions
            if version is not None:
                try:
                    binding, bundles, _ = self._prepare(surface, version)
                except FusionrankError as exc:
                    self._refused(surface, "shadow", "api", who, route.shadow, exc, after=version)
                    raise
                loaded = route.versions.get(version)
                # The active binding is only ever replaced by an activation, never by a shadow change.
                if loaded is None or (version != route.active and not _same(loaded, binding)):
                    versions = {**route.versions, version: binding}
            self._install(snapshot, replace(route, versions=versions, shadow=version), bundles)
            persisted = self._persist(surface, SHADOW_FILE, version)
            return self._applied(surface, "shadow", "api", who, route.shadow, version, persisted=persisted)

    def check(self, surface: str, version: str) -> dict[str, object]:
        """Everything an activation checks, without activating (for `POST .../validate`)."""
        with self._lock:
            self._state.snapshot.route(surface)
            binding, _, report = self._prepare(surface, version)
            return {"surface": surface, "version": version, "valid": True, **binding.versions(), **report.to_dict()}

    def describe(self) -> dict[str, object]:
        """Surfaces with their servable, active, previous and shadow versions, and refused files."""
        with self._lock:  # the history and refusals change under this lock
            return self._describe()

    def _describe(self) -> dict[str, object]:
        snapshot = self._state.snapshot
        surfaces: dict[str, object] = {}
        for name, route in sorted(snapshot.surfaces.items()):
            history = self._history.get(name, [])
            surface_dir = self.folder / name
            on_disk = sorted(p.stem for p in surface_dir.glob("*.yaml")) if surface_dir.is_dir() else []
            surfaces[name] = {
                "active": route.active,
                "previous": history[-1] if history else None,
                "shadow": route.shadow,
                "servable": sorted(route.versions),
                "on_disk": on_disk,
                "refused": dict(self._rejected.get(name, {})),
                "serving": route.binding(None).versions(),
            }
        return {
            "surfaces": surfaces,
            "problems": list(snapshot.problems),
            "policies": str(self.folder),
            "watch_interval_seconds": self._settings.policy_watch_interval,
            "persist_pointers": self._settings.persist_pointers,
        }

    # -- file watcher ----------------------------------------------------------------------------

    def sync_surface(self, surface: str, changed: set[str]) -> list[PolicyChange]:
        """Apply what changed in `policies/<surface>/` (file names): reload changed policy files,
        then follow a changed `active` or `shadow` pointer. A file that fails keeps the old binding."""
        with self._lock:
            return SurfaceSync(self, surface, changed).run()

    # -- internals -------------------------------------------------------------------------------

    def _path(self, surface: str, version: str) -> Path:
        if not VERSION_PATTERN.match(version):
            raise InvalidRequest.at("version", f"{version!r} is not a version name",
                                    "use letters, digits, `.`, `_` or `-` (e.g. `3`)")
        return self.folder / surface / f"{version}.yaml"

    def _prepare(
        self, surface: str, version: str, pin: BundlePin | None = None
    ) -> tuple[PolicyBinding, Mapping[str, ModelBundle], DryRun]:
        """Read, validate and dry-run `<surface>/<version>.yaml` on the loaded bundles (or on `pin`'s)."""
        path = self._path(surface, version)
        if not path.is_file():
            on_disk = sorted(p.stem for p in path.parent.glob("*.yaml"))
            raise NotFound(f"{path}: no policy version {version!r} for surface {surface!r}; on disk: {on_disk}")
        cache = self._cache()
        binding, report = validate_policy_file(path, cache, surface=surface, pin=pin)
        self._rejected.get(surface, {}).pop(version, None)
        return binding, cache.bundles, report

    def _cache(self) -> BundleCache:
        snapshot = self._state.snapshot
        return BundleCache(self._settings.model_store, self._settings.ort_intra_op_threads, snapshot.bundles)

    def _api_switch(self, surface: str, version: str, *, who: str, action: str) -> PolicyChange:
        snapshot = self._state.snapshot
        route = snapshot.route(surface)
        try:
            # A surface with a bundle pin keeps it: the new policy must validate against the pinned triple.
            binding, bundles, _ = self._prepare(surface, version, route.pin)
        except FusionrankError as exc:
            self._refused(surface, action, "api", who, route.active, exc, after=version)
            raise
        loaded = route.versions.get(version)
        if loaded is not None and _same(loaded, binding):
            binding = loaded  # the file did not change since it was loaded: keep serving that object
        changed = version != route.active or binding is not loaded
        if changed:
            versions = {**route.versions, version: binding}
            self._install(snapshot, replace(route, active=version, versions=versions), bundles)
        if action == "activate" and version != route.active:
            self._remember(surface, route.active)
        persisted = self._persist(surface, ACTIVE_FILE, version)
        return self._applied(surface, action, "api", who, route.active, version, persisted=persisted, changed=changed)

    def _remember(self, surface: str, previous: str) -> None:
        history = self._history.setdefault(surface, [])
        history.append(previous)
        del history[:-_HISTORY]

    def _install(
        self, snapshot: ServingSnapshot, route: SurfaceRoute, bundles: Mapping[str, ModelBundle],
        problems: tuple[str, ...] | None = None,
    ) -> None:
        # The one reference assignment: requests that already read `snapshot` keep it.
        self._state.install(snapshot.with_route(route, bundles, problems))

    def _persist(self, surface: str, pointer: str, version: str | None) -> bool:
        if not self._settings.persist_pointers:
            return False
        surface_dir = self.folder / surface
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

    def _applied(
        self, surface: str, action: str, source: str, who: str, before: str | None, after: str | None,
        *, persisted: bool | None = None, changed: bool | None = None,
    ) -> PolicyChange:
        """Audit a change; count it when it changed what a surface serves unpinned."""
        served = before != after if changed is None else changed
        if served and action != "load":
            self._state.metrics.policy_activations.labels(surface, source).inc()
        outcome = "applied" if served else "unchanged"
        return audit(PolicyChange(surface, action, source, who, before, after, outcome, persisted))

    def _refused(
        self, surface: str, action: str, source: str, who: str, before: str | None, error: FusionrankError,
        *, after: str | None = None,
    ) -> PolicyChange:
        self._state.metrics.policy_activation_failures.labels(surface, source).inc()
        return audit(PolicyChange(surface, action, source, who, before, after, "refused", error=error.message))


def _same(a: PolicyBinding, b: PolicyBinding) -> bool:
    return a.policy.file == b.policy.file and a.bundle is b.bundle and a.calibration is b.calibration
