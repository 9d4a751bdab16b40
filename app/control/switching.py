"""The machinery every change of the `Registry` shares: its state, and the checked switch.

A switch reads a policy file, validates it against its bundles (schema, model, calibration, golden
logits), dry-runs the golden batch, and installs a new immutable snapshot by one reference assignment
(or stages it while a declared change writes its rollout file first, see `app.control.registry`). Every
outcome is audited and counted here: applied, unchanged or refused with the reason. The public changes
(admin API, watcher, declared rollout state) are the `Registry`'s, built on this.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol

from app.artifacts.loading import load_policy
from app.artifacts.rollout import ROLLOUT_FILE, RolloutState
from app.control.audit import AuditTrail, PolicyChange
from app.control.declared import DeclaredFiles
from app.control.lifecycle import Served, Triple, describe, resolve
from app.control.loader import BundleCache
from app.control.persist import SurfaceFiles
from app.control.pointers import VERSION_PATTERN
from app.control.warmup import DryRun, GoldenBatch
from app.errors import Conflict, FusionrankError, InvalidRequest, NotFound
from app.monitoring.metrics import ServiceMetrics
from app.serving.bundle import BundlePin, ModelBundle, PolicyBinding, ServingSnapshot, SurfaceRoute
from app.settings import Settings

__all__ = ["Report", "SnapshotHolder", "Switchboard", "same_binding"]


_HISTORY = 32  # previously served triples remembered per surface, for rollback

# How a switch is reported: as a policy change (`/admin/policies`: versions in the audit line,
# `policy_activations` counted) or as a triple change (`/admin/surfaces`: triples, `bundle_activations`).
Report = Literal["policy", "triple"]


class SnapshotHolder(Protocol):
    """Where the served snapshot lives (the service state): read by requests, replaced by the registry."""

    @property
    def snapshot(self) -> ServingSnapshot: ...

    def install(self, snapshot: ServingSnapshot) -> None: ...


class Switchboard:
    """The state of the `Registry` and the checked switch, install and audit its changes share."""

    def __init__(
        self, holder: SnapshotHolder, settings: Settings, metrics: ServiceMetrics, golden: GoldenBatch
    ) -> None:
        self._holder = holder
        self._settings = settings
        self._metrics = metrics
        self._golden = golden
        self._audit = AuditTrail(metrics)
        self._files = SurfaceFiles(settings.policies, enabled=settings.persist_pointers)
        self._declared = DeclaredFiles(settings.policies, settings.policies_uri)  # rollout files: folder or store
        self._lock = threading.RLock()  # re-entered by a declared change around the action it runs
        self._history: dict[str, list[Served]] = {}  # surface -> triples served before, latest last
        self._rejected: dict[str, dict[str, str]] = {}  # surface -> version -> why its file was refused
        self._watch_failures: dict[str, str] = {}  # surface -> why its last watcher pass failed
        self._generation: dict[str, int] = {}  # surface -> declared generation served (0: no rollout file)
        # surface -> (when its last rollout change was installed here, how long serving it took)
        self._applied: dict[str, tuple[datetime, float]] = {}
        # A declared change in progress: installs are staged here, written to the file, then installed.
        self._declaring: RolloutState | None = None
        self._staged: ServingSnapshot | None = None

    @property
    def folder(self) -> Path:
        return self._settings.policies

    @property
    def golden(self) -> GoldenBatch:
        return self._golden

    # -- internals ------------------------------------------------------------------------------

    def _canary_salt(self, route: SurfaceRoute, binding: PolicyBinding, key: str) -> int:
        """The arm-hash salt of a new canary: kept when only its share changes (users only move stable ->
        canary), else the generation the change writes (a new canary draws a new split)."""
        old = route.canary
        if old is not None and old.key == key and old.binding.versions() == binding.versions():
            return old.salt
        return 0 if self._declaring is None else self._declaring.generation + 1

    def _served_generation(self, surface: str, generation: int) -> None:
        self._generation[surface] = generation
        self._metrics.rollout_generation.labels(surface).set(generation)

    def _rollback(self, surface: str, *, who: str, report: Report) -> PolicyChange:
        route = self._route(self._holder.snapshot, surface)
        declared = self._declaring
        # The fleet's history first (the rollout file's previous triples), else this process's (a store
        # that has no rollout file yet, or changes kept in memory).
        if declared is not None and (declared.generation > 0 or declared.previous):
            if not declared.previous:
                error = Conflict(f"surface {surface!r} has no previous triple in {ROLLOUT_FILE} to roll back to;"
                                 " activate one by name instead")
                before = route.active if report == "policy" else describe(route.binding(None))
                self._refused(surface, "rollback", who, before, None, error, report=report)
                raise error
            last = declared.previous[-1]
            pin = BundlePin(last.model_version, last.calibration_version)
            return self._switch(surface, last.policy_version, pin, who=who, action="rollback", report=report)
        history = self._history.get(surface)
        if not history:
            error = Conflict(
                f"surface {surface!r} has no previously served triple in this process to roll back to;"
                " activate one by name instead"
            )
            before = route.active if report == "policy" else describe(route.binding(None))
            self._refused(surface, "rollback", who, before, None, error, report=report)
            raise error
        previous = history[-1]
        change = self._switch(surface, previous.policy_version, previous.pin, who=who, action="rollback",
                              report=report)
        history.pop()  # only once the rollback is served
        return change

    def _switch(
        self, surface: str, version: str, pin: BundlePin | None, *, who: str, action: str, report: Report,
        end_canary: bool = False,
    ) -> PolicyChange:
        """Serve policy `version` on `pin` as the stable triple of `surface` (checked, installed, persisted,
        remembered for rollback, audited)."""
        snapshot = self._holder.snapshot
        route = self._route(snapshot, surface)
        before = route.binding(None)
        try:
            if report == "triple" and pin is not None:
                named = load_policy(self._path(surface, version))
                if (named.model.version, named.calibration_version) == (pin.model_version, pin.calibration_version):
                    pin = None  # the policy file names this very triple: no override needed
            binding, bundles, _ = self._prepare(surface, version, pin)
        except FusionrankError as exc:
            shown = route.active if report == "policy" else describe(before)
            self._refused(surface, action, who, shown, version if report == "policy" else None, exc, report=report)
            raise
        loaded = route.versions.get(version)
        if loaded is not None and pin == route.pin and same_binding(loaded, binding):
            binding = loaded  # the file did not change since it was loaded: keep serving that object
        served = Served(version, pin)
        changed = served != Served.of(route) or binding is not loaded or end_canary
        if changed:
            versions = {**route.versions, version: binding}
            canary = None if end_canary else route.canary
            self._install(snapshot, replace(route, active=version, versions=versions, pin=pin, canary=canary), bundles)
            if action != "rollback" and served != Served.of(route):
                self._remember(surface, Served.of(route))
        persisted = self._declaring is not None or self._files.write_triple(
            surface, version, pin, with_pin=report == "triple" or pin != route.pin)
        if report == "policy":
            return self._policy_applied(surface, action, "api", who, route.active, version, persisted=persisted,
                                        changed=changed)
        return self._triple_applied(surface, action, who, describe(before), describe(binding), changed, persisted)

    @staticmethod
    def _route(snapshot: ServingSnapshot, surface: str) -> SurfaceRoute:
        """The surface's route; an unserved surface (its files refused) is a 409 for the admin API, naming why."""
        why = snapshot.unserved.get(surface)
        if why is not None and surface not in snapshot.surfaces:
            raise Conflict(f"surface {surface!r} is not served: {why}; repair its files, the file watcher then"
                           " serves it (or restart)")
        return snapshot.route(surface)

    def _bind_triple(
        self, route: SurfaceRoute, want: Triple
    ) -> tuple[PolicyBinding, BundlePin, Mapping[str, ModelBundle]]:
        policy_version, pin = resolve(route, want, self.folder, self._settings.model_store)
        binding, bundles, _ = self._prepare(route.surface, policy_version, pin)
        return binding, pin, bundles

    def _path(self, surface: str, version: str) -> Path:
        if not VERSION_PATTERN.match(version):
            raise InvalidRequest.at("version", f"{version!r} is not a version name",
                                    "use letters, digits, `.`, `_` or `-` (e.g. `3`)")
        path = self.folder / surface / f"{version}.yaml"
        if not path.is_file() or path.name == ROLLOUT_FILE:
            on_disk = sorted(p.stem for p in path.parent.glob("*.yaml") if p.name != ROLLOUT_FILE)
            raise NotFound(f"{path}: no policy version {version!r} for surface {surface!r}; on disk: {on_disk}")
        return path

    def _prepare(
        self, surface: str, version: str, pin: BundlePin | None = None
    ) -> tuple[PolicyBinding, Mapping[str, ModelBundle], DryRun]:
        """Read, validate and dry-run `<surface>/<version>.yaml` on the loaded bundles (or on `pin`'s)."""
        path = self._path(surface, version)
        cache = self._cache()
        binding, report = self._golden.validate(path, cache, surface=surface, pin=pin)
        self._rejected.get(surface, {}).pop(version, None)
        return binding, cache.bundles, report

    def _cache(self) -> BundleCache:
        snapshot = self._holder.snapshot
        return BundleCache(self._settings.model_store, self._settings.ort_intra_op_threads, snapshot.bundles)

    def _remember(self, surface: str, served: Served) -> None:
        history = self._history.setdefault(surface, [])
        history.append(served)
        del history[:-_HISTORY]

    def _install(
        self, snapshot: ServingSnapshot, route: SurfaceRoute, bundles: Mapping[str, ModelBundle],
        problems: tuple[str, ...] | None = None,
    ) -> None:
        new = snapshot.with_route(route, bundles, problems)
        if self._declaring is not None:  # a declared change: installed once its file is written
            self._staged = new
            return
        # The one reference assignment: requests that already read `snapshot` keep it.
        self._holder.install(new)

    def _policy_applied(
        self, surface: str, action: str, source: str, who: str, before: str | None, after: str | None,
        *, persisted: bool | None = None, changed: bool | None = None,
    ) -> PolicyChange:
        served = before != after if changed is None else changed
        outcome = "applied" if served else "unchanged"
        persisted = True if self._declaring is not None else persisted
        return self._audit.policy(PolicyChange(surface, action, source, who, before, after, outcome, persisted))

    def _triple_applied(self, surface: str, action: str, who: str, before: str | None, after: str | None,
                        changed: bool, persisted: bool) -> PolicyChange:
        outcome = "applied" if changed else "unchanged"
        persisted = persisted or self._declaring is not None
        return self._audit.triple(PolicyChange(surface, action, "api", who, before, after, outcome, persisted))

    def _refused(
        self, surface: str, action: str, who: str, before: str | None, after: str | None, error: FusionrankError,
        *, report: Report,
    ) -> None:
        if report == "triple":
            self._audit.triple(PolicyChange(surface, action, "api", who, before, None, "refused", error=error.message))
        else:
            self._audit.policy(PolicyChange(surface, action, "api", who, before, after, "refused", error=error.message))

def same_binding(a: PolicyBinding, b: PolicyBinding) -> bool:
    """Whether two bindings serve the very same policy file, bundle and calibration objects."""
    return a.policy.file == b.policy.file and a.bundle is b.bundle and a.calibration is b.calibration
