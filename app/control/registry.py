"""The registry: the one owner of what each surface serves, and of every change to it.

The policies folder and the model store are the source of truth for *files*; the serving snapshot
is the truth for what is *served*. Every change — a policy or a triple activation, a rollback, a
canary, a shadow, a pass of the file watcher — runs under the registry's one lock and goes: read
the files, validate them (schema, model, calibration, golden logits), dry-run the golden batch,
build a new immutable `ServingSnapshot` that reuses the loaded model bundles, and install it by one
reference assignment (a request that already read the old snapshot finishes on it). Any failure
leaves the old snapshot in place and is audited and counted.

The registry keeps **one** history per surface: the (policy version, pin) pairs — (model,
calibration, policy) triples — the surface served before each change of its stable triple,
whoever made it (policy activation, triple activation, canary promotion, watcher). Both rollback
endpoints step back through it.

**Declared rollout state.** With `persist_pointers` on (the default), every admin change is a write of
the surface's declared state, `policies/<surface>/rollout.yaml` (`app.artifacts.rollout`): under the
surface's exclusive lock file the registry reads the file, checks the writer's expected generation
(compare-and-swap, 409 naming the current one), runs the change on a *staged* snapshot (every check
above; a refused change writes nothing), writes the new state one generation on (atomic rename; with the
policies in an object store, a conditional PUT that only one of two racing replicas wins, see
`app.control.declared`), and only then installs the staged snapshot. Every other replica's watcher reads
the new file and applies it whole (`apply_declared`): active, canary, shadow model and shadow policy in one
swap. A surface without a rollout file serves what its `active`/`bundle`/`shadow` pointer files say
(the migration path); its first admin change writes the file, which from then on wins over the pointers.
With `persist_pointers` off, changes stay in this process's memory (tests, experiments).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

from app.artifacts.loading import load_policy
from app.artifacts.rollout import ROLLOUT_FILE, RolloutState
from app.control.audit import AuditTrail, PolicyChange
from app.control.declared import DeclaredFiles, check_generation, read_declared
from app.control.lifecycle import Served, Triple, describe, resolve
from app.control.loader import BundleCache
from app.control.persist import SurfaceFiles
from app.control.pins import PIN_FILE
from app.control.pointers import ACTIVE_FILE, SHADOW_FILE, VERSION_PATTERN
from app.control.rollout_state import route_of, state_of
from app.control.surface_sync import WATCHER, SurfaceSync
from app.control.warmup import DryRun, GoldenBatch
from app.errors import ArtifactError, Conflict, FusionrankError, InvalidRequest, NotFound
from app.monitoring.metrics import ServiceMetrics
from app.serving.bundle import BundlePin, Canary, ModelBundle, PolicyBinding, ServingSnapshot, SurfaceRoute
from app.serving.routing import CANARY_KEY
from app.settings import Settings

__all__ = ["WATCHER", "Registry", "SnapshotHolder"]

log = logging.getLogger("fusionrank.registry")

_HISTORY = 32  # previously served triples remembered per surface, for rollback

# How a switch is reported: as a policy change (`/admin/policies`: versions in the audit line,
# `policy_activations` counted) or as a triple change (`/admin/surfaces`: triples, `bundle_activations`).
Report = Literal["policy", "triple"]


class SnapshotHolder(Protocol):
    """Where the served snapshot lives (the service state): read by requests, replaced by the registry."""

    @property
    def snapshot(self) -> ServingSnapshot: ...

    def install(self, snapshot: ServingSnapshot) -> None: ...


class Registry:
    """Every change of what the surfaces serve goes through here (admin API and file watcher alike)."""

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

    # -- policies (`/admin/policies`) -----------------------------------------------------------

    def activate_policy(self, surface: str, version: str, *, who: str) -> PolicyChange:
        """Validate, dry-run and serve policy `version` on `surface` (on the surface's pin, if any)."""
        with self._lock:
            route = self._route(self._holder.snapshot, surface)
            return self._switch(surface, version, route.pin, who=who, action="activate", report="policy")

    def rollback_policy(self, surface: str, *, who: str) -> PolicyChange:
        """Serve the triple served before the last change of the stable triple (checked again)."""
        with self._lock:
            return self._rollback(surface, who=who, report="policy")

    def set_shadow(self, surface: str, version: str | None, *, who: str) -> PolicyChange:
        """Rank `version` alongside the active policy of `surface` (None: stop shadowing)."""
        with self._lock:
            snapshot = self._holder.snapshot
            route = self._route(snapshot, surface)
            bundles: Mapping[str, ModelBundle] = {}
            versions = route.versions
            if version is not None:
                try:
                    binding, bundles, _ = self._prepare(surface, version)
                except FusionrankError as exc:
                    self._refused(surface, "shadow", who, route.shadow, version, exc, report="policy")
                    raise
                loaded = route.versions.get(version)
                # The active binding is only ever replaced by an activation, never by a shadow change.
                if loaded is None or (version != route.active and not _same(loaded, binding)):
                    versions = {**route.versions, version: binding}
            self._install(snapshot, replace(route, versions=versions, shadow=version), bundles)
            persisted = self._declaring is not None or self._files.write_pointer(surface, SHADOW_FILE, version)
            return self._policy_applied(surface, "shadow", "api", who, route.shadow, version, persisted=persisted)

    def check(self, surface: str, version: str) -> dict[str, object]:
        """Everything an activation checks, without activating (for `POST .../validate`)."""
        with self._lock:
            self._route(self._holder.snapshot, surface)
            binding, _, report = self._prepare(surface, version)
            return {"surface": surface, "version": version, "valid": True, **binding.versions(), **report.to_dict()}

    def describe(self) -> dict[str, object]:
        """Surfaces with their servable, active, previous and shadow versions, and refused files."""
        with self._lock:  # the history and refusals change under this lock
            snapshot = self._holder.snapshot
            surfaces: dict[str, object] = {}
            for name, route in sorted(snapshot.surfaces.items()):
                history = self._history.get(name, [])
                surface_dir = self.folder / name
                on_disk = sorted(p.stem for p in surface_dir.glob("*.yaml") if p.name != ROLLOUT_FILE)
                surfaces[name] = {
                    "active": route.active,
                    "previous": history[-1].policy_version if history else None,
                    "shadow": route.shadow,
                    "servable": sorted(route.versions),
                    "on_disk": on_disk,
                    "refused": dict(self._rejected.get(name, {})),
                    "serving": route.binding(None).versions(),
                    "generation": self._generation.get(name, 0),
                }
            return {
                "surfaces": surfaces,
                "problems": list(snapshot.problems),
                "unserved": dict(snapshot.unserved),
                "policies": str(self.folder),
                "watch_interval_seconds": self._settings.policy_watch_interval,
                "persist_pointers": self._settings.persist_pointers,
            }

    # -- triples (`/admin/surfaces`) ------------------------------------------------------------

    def activate(self, surface: str, want: Triple, *, who: str, action: str = "activate") -> PolicyChange:
        """Serve `want` (omitted parts as served now) as the surface's stable triple."""
        with self._lock:
            route = self._route(self._holder.snapshot, surface)
            try:
                policy_version, pin = resolve(route, want, self.folder, self._settings.model_store)
            except FusionrankError as exc:
                self._refused(surface, action, who, describe(route.binding(None)), None, exc, report="triple")
                raise
            return self._switch(surface, policy_version, pin, who=who, action=action, report="triple")

    def rollback(self, surface: str, *, who: str) -> PolicyChange:
        """Serve the triple served before the last change of the stable triple (checked again)."""
        with self._lock:
            return self._rollback(surface, who=who, report="triple")

    def start_canary(self, surface: str, want: Triple, fraction: float, key: str | None, *, who: str) -> PolicyChange:
        """Serve `want` (omitted parts as the stable triple) to `fraction` of the requests, sticky by `key`."""
        with self._lock:
            snapshot = self._holder.snapshot
            route = self._route(snapshot, surface)
            stable = route.binding(None)
            try:
                if not 0.0 < fraction < 1.0:
                    raise InvalidRequest.at("fraction", f"{fraction} is not in (0, 1)", "send e.g. 0.05")
                binding, pin, bundles = self._bind_triple(route, want)
                if binding.versions() == stable.versions():
                    raise Conflict(f"the canary triple is the stable one ({describe(stable)})")
            except FusionrankError as exc:
                self._refused(surface, "canary", who, describe(stable), None, exc, report="triple")
                raise
            key = key or CANARY_KEY
            salt = self._canary_salt(route, binding, key)
            canary = Canary(binding, fraction, key, pin, salt)
            self._install(snapshot, replace(route, canary=canary), bundles)
            before = None if route.canary is None else describe(route.canary.binding)
            return self._triple_applied(surface, "canary", who, before, f"{describe(binding)} at {fraction:g}",
                                        True, False)

    def promote(self, surface: str, *, who: str) -> PolicyChange:
        """Serve the canary triple to everyone (a checked activation), then end the canary."""
        with self._lock:
            route = self._route(self._holder.snapshot, surface)
            if route.canary is None:
                error = Conflict(f"surface {surface!r} has no canary to promote")
                self._refused(surface, "promote", who, describe(route.binding(None)), None, error, report="triple")
                raise error
            canary = route.canary
            # One swap: the canary triple becomes stable and the canary ends together.
            return self._switch(surface, canary.binding.policy.version, canary.pin, who=who, action="promote",
                                report="triple", end_canary=True)

    def abort(self, surface: str, *, who: str) -> PolicyChange:
        """End the canary: every request is served by the stable triple again."""
        with self._lock:
            snapshot = self._holder.snapshot
            route = self._route(snapshot, surface)
            if route.canary is None:
                return self._triple_applied(surface, "abort", who, None, None, False, False)
            self._install(snapshot, replace(route, canary=None), {})
            return self._triple_applied(surface, "abort", who, describe(route.canary.binding), None, True, False)

    def set_shadow_model(self, surface: str, want: Triple | None, fraction: float, *, who: str) -> PolicyChange:
        """Score `fraction` of the requests with `want` off the response path (None: stop)."""
        with self._lock:
            snapshot = self._holder.snapshot
            route = self._route(snapshot, surface)
            before = None if route.shadow_model is None else describe(route.shadow_model)
            if want is None:
                self._install(snapshot, replace(route, shadow_model=None, shadow_model_fraction=0.0), {})
                return self._triple_applied(surface, "shadow_model", who, before, None, before is not None, False)
            try:
                if not 0.0 < fraction <= 1.0:
                    raise InvalidRequest.at("fraction", f"{fraction} is not in (0, 1]", "send e.g. 0.1")
                binding, _, bundles = self._bind_triple(route, want)
            except FusionrankError as exc:
                self._refused(surface, "shadow_model", who, before, None, exc, report="triple")
                raise
            self._install(snapshot, replace(route, shadow_model=binding, shadow_model_fraction=fraction), bundles)
            return self._triple_applied(surface, "shadow_model", who, before,
                                        f"{describe(binding)} at {fraction:g}", True, False)

    # -- the declared rollout state (`policies/<surface>/rollout.yaml`) ---------------------------

    def declare(
        self, surface: str, change: Callable[[], PolicyChange], *, who: str, reason: str = "",
        expected_generation: int | None = None,
    ) -> tuple[PolicyChange, int]:
        """Run an admin change as a write of the surface's rollout file; answers the change and the
        generation served after it. Under the surface's lock file: read the file (catching up on it
        first if this process lags), compare-and-swap on `expected_generation`, run `change` on a staged
        snapshot (a refused change raises and writes nothing), write the new state, install it."""
        with self._lock, contextlib.ExitStack() as stack:
            route = self._route(self._holder.snapshot, surface)
            if not self._files.enabled:  # memory only: the generation still guards concurrent admins
                check_generation(surface, self._generation.get(surface, 0), expected_generation)
                return change(), self._generation.get(surface, 0)
            surface_dir = self.folder / surface
            try:
                file = stack.enter_context(self._declared.writing(surface))
            except OSError as exc:
                if self._declared.uri is not None:
                    raise Conflict(f"cannot read {self._declared.uri}/{surface}/{ROLLOUT_FILE} ({exc}); nothing"
                                   " changed: check the store's credentials and endpoint, then retry") from None
                raise Conflict(f"cannot lock {surface_dir / ROLLOUT_FILE} for writing ({exc}); the store folder is"
                               " read-only: mount it writable (a volume) or edit rollout.yaml where it is kept"
                               ) from None
            declared = file.current
            if declared is not None and declared.generation != self._generation.get(surface, 0):
                self._apply(surface, declared, who=who)  # another replica wrote it: start from it
                route = self._route(self._holder.snapshot, surface)
            current = declared or state_of(route, None, generation=0, who="", reason="")
            check_generation(surface, current.generation, expected_generation)
            self._declaring, self._staged = current, None
            started = time.perf_counter()
            try:
                result = change()
                staged = self._staged
            finally:
                self._declaring, self._staged = None, None
            if staged is None:  # nothing changed (e.g. abort without a canary): nothing written
                return result, current.generation
            new = state_of(staged.route(surface), current, generation=current.generation + 1, who=who,
                           reason=reason, rolled_back=result.action == "rollback")
            try:
                file.write(new)  # object store: a conditional PUT, 409 when another admin's write won
            except OSError as exc:
                raise Conflict(f"could not write {file.uri or surface_dir / ROLLOUT_FILE} ({exc}); nothing changed:"
                               " free space or make the store writable, then retry") from None
            self._holder.install(staged)
            self._served_generation(surface, new.generation)
            self._applied[surface] = (datetime.now(UTC), time.perf_counter() - started)
            return result, new.generation

    def declared(self, surface: str) -> dict[str, object]:
        """The surface's rollout file as declared, the generation this process serves, when its last change
        was installed here (`applied_at`, UTC) and how long serving it took (`apply_seconds`: read, validate,
        golden batch, load and warm, swap)."""
        with self._lock:
            self._route(self._holder.snapshot, surface)
            state = read_declared(self.folder / surface)
            applied = self._applied.get(surface)
            return {"surface": surface, "serving_generation": self._generation.get(surface, 0),
                    "applied_at": None if applied is None else applied[0].isoformat(timespec="microseconds"),
                    "apply_seconds": None if applied is None else round(applied[1], 6),
                    "declared": None if state is None else state.model_dump(mode="json")}

    def adopt_declared(self) -> None:
        """At start-up: serve every surface's rollout file (the pointer files' state stays where there is none).
        A rollout file refused at start-up leaves its surface unserved (503 naming why), never silently
        on the pointers' older triple: the fleet must not split."""
        for surface in sorted(self._holder.snapshot.surfaces):
            self._metrics.rollout_generation.labels(surface).set(0)
            if not (self.folder / surface / ROLLOUT_FILE).exists():
                continue
            change = self.apply_declared(surface)
            if change is not None and change.outcome == "refused":
                snapshot = self._holder.snapshot
                surfaces = {name: route for name, route in snapshot.surfaces.items() if name != surface}
                why = f"{self.folder / surface / ROLLOUT_FILE} refused at start-up: {change.error}"
                self._holder.install(replace(snapshot, surfaces=surfaces, unserved={**snapshot.unserved,
                                                                                    surface: why}))

    def apply_declared(self, surface: str) -> PolicyChange | None:
        """Serve the surface's rollout file as it is on disk (the watcher's pass); a file that cannot be
        read or served is refused (metric, log, /readyz problem) and the last good state keeps serving."""
        with self._lock:
            path = self.folder / surface / ROLLOUT_FILE
            try:
                state = read_declared(path.parent)
                if state is None or state.generation == self._generation.get(surface):
                    return None
                if state.surface != surface:
                    raise ArtifactError(path, "surface", f"{state.surface!r} is not this folder's surface",
                                        f"write surface: {surface}")
                return self._apply(surface, state, who=WATCHER)
            except FusionrankError as exc:
                self._metrics.rollout_refusals.labels(surface).inc()
                served = self._generation.get(surface, 0)
                why = f"{path}: refused ({exc.message}); generation {served} keeps serving"
                snapshot = self._holder.snapshot
                if why not in snapshot.problems:
                    log.error("rollout file refused, the surface keeps its last good state: %s", why)
                    problems = (*(p for p in snapshot.problems if not p.startswith(f"{path}:")), why)
                    self._holder.install(replace(snapshot, problems=problems))
                return self._audit.triple(PolicyChange(surface, "rollout", "watch", WATCHER, f"generation {served}",
                                                       None, "refused", error=exc.message))

    def generation(self, surface: str) -> int:
        """The declared generation this process serves for `surface` (0: no rollout file applied)."""
        return self._generation.get(surface, 0)

    def _apply(self, surface: str, state: RolloutState, *, who: str) -> PolicyChange:
        """Bind every part of `state` (validated, dry-run, warm), then install it in one swap."""
        started = time.perf_counter()
        snapshot = self._holder.snapshot
        route = self._route(snapshot, surface)
        cache = self._cache()
        new = route_of(state, route, self.folder / surface, cache, self._golden)
        path = f"{self.folder / surface / ROLLOUT_FILE}:"
        problems = tuple(p for p in snapshot.problems if not p.startswith(path))
        self._install(snapshot, new, cache.bundles, problems)
        self._applied[surface] = (datetime.now(UTC), time.perf_counter() - started)
        if Served.of(route) != Served.of(new):
            self._remember(surface, Served.of(route))
        before = self._generation.get(surface, 0)
        self._served_generation(surface, state.generation)
        by = f" by {state.changed_by}" + (f": {state.reason}" if state.reason else "")
        return self._audit.triple(PolicyChange(
            surface, "rollout", "watch", who, f"generation {before}",
            f"generation {state.generation}{by} ({state.active.text()})", "applied", True))

    def _served_generation(self, surface: str, generation: int) -> None:
        self._generation[surface] = generation
        self._metrics.rollout_generation.labels(surface).set(generation)

    def _canary_salt(self, route: SurfaceRoute, binding: PolicyBinding, key: str) -> int:
        """The arm-hash salt of a new canary: kept when only its share changes (users only move stable ->
        canary), else the generation the change writes (a new canary draws a new split)."""
        old = route.canary
        if old is not None and old.key == key and old.binding.versions() == binding.versions():
            return old.salt
        return 0 if self._declaring is None else self._declaring.generation + 1

    # -- the file watcher's pass ----------------------------------------------------------------

    def sync(self, changed: Mapping[str, set[str]]) -> list[PolicyChange]:
        """One watcher pass: apply what changed under the policies folder (surface -> changed file names).

        Each surface is synced on its own: a surface whose pass fails (a bug; bad files are refused
        file by file) is logged once per distinct reason and counted, keeps what it serves, and
        neither stops the other surfaces nor the next pass.
        """
        changes: list[PolicyChange] = []
        for surface in sorted(changed):
            try:
                changes.extend(self.sync_surface(surface, changed[surface]))
            except Exception as exc:
                self._metrics.policy_watch_failures.labels(surface).inc()
                reason = f"{type(exc).__name__}: {exc}"
                if self._watch_failures.get(surface) != reason:
                    log.error("watcher pass over policies/%s failed (%s); it keeps serving what it served and"
                              " later edits are still applied", surface, reason, exc_info=exc)
                self._watch_failures[surface] = reason
            else:
                self._watch_failures.pop(surface, None)
        return changes

    def sync_surface(self, surface: str, changed: set[str]) -> list[PolicyChange]:
        """Apply what changed in `policies/<surface>/` (file names): reload changed policy files,
        then follow a changed `active`, `shadow` or `bundle` file — or, once the surface has one, its changed
        rollout file (`apply_declared`). A file that fails keeps the old binding."""
        with self._lock:
            snapshot = self._holder.snapshot
            route = snapshot.surfaces.get(surface)
            declared = (self.folder / surface / ROLLOUT_FILE).exists()
            files = changed - {ROLLOUT_FILE}
            if declared and route is not None:  # the rollout file, not the pointers, says what is served
                files -= {ACTIVE_FILE, SHADOW_FILE, PIN_FILE}
            cache = self._cache()
            result = SurfaceSync(
                self.folder / surface, route, files, cache=cache, golden=self._golden,
                problems=snapshot.problems, rejected=self._rejected.get(surface, {}),
            ).run()
            self._rejected[surface] = result.rejected
            if result.route is not None:
                if route is not None and Served.of(route) != Served.of(result.route):
                    self._remember(surface, Served.of(route))
                self._install(snapshot, result.route, cache.bundles, result.problems)
            changes = [self._audit.policy(change) for change in result.changes]
            if declared and (ROLLOUT_FILE in changed or route is None) and surface in self._holder.snapshot.surfaces:
                applied = self.apply_declared(surface)
                if applied is not None:
                    changes.append(applied)
                if route is None and applied is not None and applied.outcome == "refused":
                    self._holder.install(snapshot)  # still unserved: never on the pointers' older triple
            return changes

    # -- internals ------------------------------------------------------------------------------

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
        if loaded is not None and pin == route.pin and _same(loaded, binding):
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

def _same(a: PolicyBinding, b: PolicyBinding) -> bool:
    return a.policy.file == b.policy.file and a.bundle is b.bundle and a.calibration is b.calibration
