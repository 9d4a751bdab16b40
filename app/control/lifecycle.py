"""Rollout of model and calibration versions: activate a triple, roll back, canary, shadow model.

A surface serves a (model, calibration, policy) triple: its active policy, bound to the model and
calibration its file names, or to a *pin* (`policies/<surface>/bundle`, see `app.control.pins`) that
overrides them. Every change here runs under the policy registry's lock (so a policy activation and
a model activation never interleave) and goes: resolve the triple (omitted parts stay as served),
load the bundle if new (schema, sha256, golden logits to 1e-5), cross-check calibration and policy
against the model, dry-run the golden batch (the warm-up of a new session), then install a new
snapshot by one reference swap. The old snapshot, and with it an unused ONNX session, is freed when
the last request holding it finishes. Any failure leaves the surface as it was; everything is audited.

The pin and the active pointer are written back to the surface folder (when writable), so restarts
and other replicas (through their file watchers) follow; the canary and the shadow model live in
this process's memory only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from app.artifacts.loading import load_policy
from app.control.audit import PolicyChange, audit
from app.control.pins import BundlePin, remove_pin, write_pin
from app.control.pointers import ACTIVE_FILE, VERSION_PATTERN
from app.control.registry import PolicyRegistry
from app.control.warmup import validate_policy_file
from app.errors import Conflict, FusionrankError, InvalidRequest, NotFound
from app.serving.bundle import Canary, ModelBundle, PolicyBinding, SurfaceRoute
from app.serving.routing import CANARY_KEY

__all__ = ["BundleRegistry", "Triple"]

_HISTORY = 32


@dataclass(frozen=True, slots=True)
class Triple:
    """What an admin asks for; None parts stay as the surface serves them."""

    model_version: str | None = None
    calibration_version: str | None = None
    policy_version: str | None = None


@dataclass(frozen=True, slots=True)
class _Served:
    policy_version: str
    pin: BundlePin | None


class BundleRegistry:
    """Triple activations, rollback, canary and shadow model of each surface (admin API)."""

    def __init__(self, policies: PolicyRegistry) -> None:
        self._policies = policies
        self._state = policies._state
        self._history: dict[str, list[_Served]] = {}

    # -- activation and rollback ----------------------------------------------------------------

    def activate(self, surface: str, want: Triple, *, who: str, action: str = "activate") -> PolicyChange:
        with self._policies._lock:
            return self._activate(surface, want, who=who, action=action)

    def rollback(self, surface: str, *, who: str) -> PolicyChange:
        """Serve the triple served before the last activation (checked again, as any activation)."""
        with self._policies._lock:
            history = self._history.get(surface)
            route = self._state.snapshot.route(surface)
            if not history:
                error = Conflict(f"surface {surface!r} has no previous triple in this process to roll back to;"
                                 " activate one by its versions instead")
                self._refused(surface, "rollback", who, _describe(route.binding(None)), error)
                raise error
            previous = history[-1]
            change = self._switch(surface, previous.policy_version, previous.pin, who=who, action="rollback")
            history.pop()
            return change

    def _activate(self, surface: str, want: Triple, *, who: str, action: str) -> PolicyChange:
        route = self._state.snapshot.route(surface)
        try:
            policy_version, pin = self._resolve(route, want)
        except FusionrankError as exc:
            self._refused(surface, action, who, _describe(route.binding(None)), exc)
            raise
        return self._switch(surface, policy_version, pin, who=who, action=action)

    def _resolve(self, route: SurfaceRoute, want: Triple) -> tuple[str, BundlePin | None]:
        """The policy version and pin to serve: omitted parts stay as served now."""
        for field, value in (("model_version", want.model_version),
                             ("calibration_version", want.calibration_version),
                             ("policy_version", want.policy_version)):
            if value is not None and not VERSION_PATTERN.match(value):
                raise InvalidRequest.at(field, f"{value!r} is not a version name", "use e.g. `2`")
        serving = route.binding(None).versions()
        policy_version = want.policy_version or route.active
        model_version = want.model_version or serving["model_version"]
        calibration = want.calibration_version or serving["calibration_version"]
        policy_path = self._policies.folder / route.surface / f"{policy_version}.yaml"
        if not policy_path.is_file():
            raise NotFound(f"{policy_path}: no policy version {policy_version!r} for surface {route.surface!r}")
        model_dir = self._state.settings.model_store / serving["model"] / model_version
        if not model_dir.is_dir():
            raise NotFound(f"{model_dir}: no model version {model_version!r} of {serving['model']!r} in the store")
        if want.calibration_version is None and not (model_dir / "calibration" / f"{calibration}.json").is_file():
            raise InvalidRequest.at(
                "calibration_version",
                f"model {serving['model']}/{model_version} has no calibration {calibration!r} (the one served now)",
                "name the calibration version to serve with this model",
            )
        return policy_version, BundlePin(model_version, calibration)

    def _switch(self, surface: str, policy_version: str, pin: BundlePin | None, *, who: str,
                action: str, end_canary: bool = False) -> PolicyChange:
        reg = self._policies
        snapshot = self._state.snapshot
        route = snapshot.route(surface)
        before = route.binding(None)
        path = reg.folder / surface / f"{policy_version}.yaml"
        try:
            if not path.is_file():
                raise NotFound(f"{path}: no policy version {policy_version!r} for surface {surface!r}")
            if pin is not None:
                named = load_policy(path)
                if (named.model.version, named.calibration_version) == (pin.model_version, pin.calibration_version):
                    pin = None  # the policy file names this very triple: no override needed
            cache = reg._cache()
            binding, _ = validate_policy_file(path, cache, surface=surface, pin=pin)
        except FusionrankError as exc:
            self._refused(surface, action, who, _describe(before), exc)
            raise
        changed = binding.versions() != before.versions() or pin != route.pin or end_canary
        if changed:
            versions = {**route.versions, policy_version: binding}
            canary = None if end_canary else route.canary
            new = replace(route, active=policy_version, versions=versions, pin=pin, canary=canary)
            reg._install(snapshot, new, cache.bundles)
            if action != "rollback":
                history = self._history.setdefault(surface, [])
                history.append(_Served(route.active, route.pin))
                del history[:-_HISTORY]
        persisted = self._persist(surface, policy_version, pin)
        return self._applied(surface, action, who, _describe(before), _describe(binding), changed, persisted)

    # -- canary -----------------------------------------------------------------------------------

    def start_canary(self, surface: str, want: Triple, fraction: float, key: str | None, *, who: str) -> PolicyChange:
        """Serve `want` (omitted parts as the stable triple) to `fraction` of the requests, sticky by `key`."""
        with self._policies._lock:
            snapshot = self._state.snapshot
            route = snapshot.route(surface)
            stable = route.binding(None)
            try:
                if not 0.0 < fraction < 1.0:
                    raise InvalidRequest.at("fraction", f"{fraction} is not in (0, 1)", "send e.g. 0.05")
                policy_version, pin = self._resolve(route, want)
                cache = self._policies._cache()
                path = self._policies.folder / surface / f"{policy_version}.yaml"
                binding, _ = validate_policy_file(path, cache, surface=surface, pin=pin)
                if binding.versions() == stable.versions():
                    raise Conflict(f"the canary triple is the stable one ({_describe(stable)})")
            except FusionrankError as exc:
                self._refused(surface, "canary", who, _describe(stable), exc)
                raise
            assert pin is not None  # _resolve always names a model and a calibration
            canary = Canary(binding, fraction, key or CANARY_KEY, pin)
            self._policies._install(snapshot, replace(route, canary=canary), cache.bundles)
            before = None if route.canary is None else _describe(route.canary.binding)
            return self._applied(surface, "canary", who, before, f"{_describe(binding)} at {fraction:g}", True, False)

    def promote(self, surface: str, *, who: str) -> PolicyChange:
        """Serve the canary triple to everyone (a checked activation), then end the canary."""
        with self._policies._lock:
            route = self._state.snapshot.route(surface)
            if route.canary is None:
                error = Conflict(f"surface {surface!r} has no canary to promote")
                self._refused(surface, "promote", who, _describe(route.binding(None)), error)
                raise error
            canary = route.canary
            version = canary.binding.policy.version
            # One swap: the canary triple becomes stable and the canary ends together.
            return self._switch(surface, version, canary.pin, who=who, action="promote", end_canary=True)

    def abort(self, surface: str, *, who: str) -> PolicyChange:
        """End the canary: every request is served by the stable triple again."""
        with self._policies._lock:
            snapshot = self._state.snapshot
            route = snapshot.route(surface)
            if route.canary is None:
                return self._applied(surface, "abort", who, None, None, False, False)
            self._policies._install(snapshot, replace(route, canary=None), {})
            return self._applied(surface, "abort", who, _describe(route.canary.binding), None, True, False)

    # -- shadow model -----------------------------------------------------------------------------

    def set_shadow_model(self, surface: str, want: Triple | None, fraction: float, *, who: str) -> PolicyChange:
        """Score `fraction` of the requests with `want` off the response path (None: stop)."""
        with self._policies._lock:
            snapshot = self._state.snapshot
            route = snapshot.route(surface)
            before = None if route.shadow_model is None else _describe(route.shadow_model)
            if want is None:
                self._policies._install(snapshot, replace(route, shadow_model=None, shadow_model_fraction=0.0), {})
                return self._applied(surface, "shadow_model", who, before, None, before is not None, False)
            bundles: Mapping[str, ModelBundle]
            try:
                if not 0.0 < fraction <= 1.0:
                    raise InvalidRequest.at("fraction", f"{fraction} is not in (0, 1]", "send e.g. 0.1")
                policy_version, pin = self._resolve(route, want)
                cache = self._policies._cache()
                path = self._policies.folder / surface / f"{policy_version}.yaml"
                binding, _ = validate_policy_file(path, cache, surface=surface, pin=pin)
                bundles = cache.bundles
            except FusionrankError as exc:
                self._refused(surface, "shadow_model", who, before, exc)
                raise
            new = replace(route, shadow_model=binding, shadow_model_fraction=fraction)
            self._policies._install(snapshot, new, bundles)
            return self._applied(surface, "shadow_model", who, before, f"{_describe(binding)} at {fraction:g}", True,
                                 False)

    # -- internals --------------------------------------------------------------------------------

    def _persist(self, surface: str, policy_version: str, pin: BundlePin | None) -> bool:
        """Write the pin, then the active pointer (a watcher that reads between the two sees the old
        policy on the new pin, which was validated too, or refuses it and catches up at the next poll)."""
        reg = self._policies
        if not reg._settings.persist_pointers:
            return False
        surface_dir = reg.folder / surface
        try:
            if pin is None:
                remove_pin(surface_dir)
            else:
                write_pin(surface_dir, pin)
        except OSError:
            return False
        return reg._persist(surface, ACTIVE_FILE, policy_version)

    def _applied(self, surface: str, action: str, who: str, before: str | None, after: str | None, changed: bool,
                 persisted: bool) -> PolicyChange:
        if changed:
            self._state.metrics.bundle_activations.labels(surface, action).inc()
        outcome = "applied" if changed else "unchanged"
        return audit(PolicyChange(surface, action, "api", who, before, after, outcome, persisted))

    def _refused(self, surface: str, action: str, who: str, before: str | None, error: FusionrankError) -> None:
        self._state.metrics.bundle_activation_failures.labels(surface, action).inc()
        audit(PolicyChange(surface, action, "api", who, before, None, "refused", error=error.message))


def _describe(binding: PolicyBinding) -> str:
    v = binding.versions()
    return f"model {v['model']}/{v['model_version']}, calibration {v['calibration_version']}, " \
           f"policy {v['policy_version']}"
