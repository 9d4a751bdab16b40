"""Turn a declared rollout state into the route a surface serves, and a served route back into a state.

`route_of` is what every replica's watcher runs on a new `rollout.yaml`: it binds the active, canary
and shadow-model triples and the shadow policy, each validated and dry-run on the golden batch (which
loads and warms the model bundles), and returns the new route; the registry installs it in one swap.
Any failure raises and nothing is installed. `state_of` is what an admin change writes: the route the
change produced, as a declared state one generation on.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from app.artifacts.loading import load_policy
from app.artifacts.rollout import (
    MAX_PREVIOUS,
    ROLLOUT_FILE,
    RolloutCanary,
    RolloutShadowModel,
    RolloutState,
    RolloutTriple,
)
from app.control.loader import BundleCache
from app.control.warmup import GoldenBatch
from app.errors import ArtifactError
from app.serving.bundle import BundlePin, Canary, PolicyBinding, SurfaceRoute

__all__ = ["bind_triple", "route_of", "state_of", "triple_of"]


def triple_of(binding: PolicyBinding) -> RolloutTriple:
    """The triple a binding serves, every part named."""
    return RolloutTriple.model_validate(binding.versions())


def bind_triple(
    triple: RolloutTriple, surface_dir: Path, cache: BundleCache, golden: GoldenBatch, *, field: str
) -> tuple[PolicyBinding, BundlePin | None]:
    """Validate and dry-run `triple` on `surface_dir`'s policy file; the pin is None when the policy file
    names this very model and calibration. `field` names the part of the rollout file at fault."""
    path = surface_dir / f"{triple.policy_version}.yaml"
    if not path.is_file() or path.name == ROLLOUT_FILE:
        on_disk = sorted(p.stem for p in surface_dir.glob("*.yaml") if p.name != ROLLOUT_FILE)
        raise ArtifactError(surface_dir / "rollout.yaml", f"{field}.policy_version",
                            f"no policy file {path.name} in {surface_dir}",
                            f"name one of the policy versions on disk: {on_disk}")
    named = load_policy(path)
    if named.model.name != triple.model:
        raise ArtifactError(surface_dir / "rollout.yaml", f"{field}.model",
                            f"policy {triple.policy_version} applies to model {named.model.name!r}, not"
                            f" {triple.model!r}", f"write model: {named.model.name}")
    pin: BundlePin | None = BundlePin(triple.model_version, triple.calibration_version)
    if (named.model.version, named.calibration_version) == (triple.model_version, triple.calibration_version):
        pin = None
    binding, _ = golden.validate(path, cache, surface=surface_dir.name, pin=pin)
    return binding, pin


def route_of(
    state: RolloutState, route: SurfaceRoute, surface_dir: Path, cache: BundleCache, golden: GoldenBatch
) -> SurfaceRoute:
    """The route serving `state`, starting from the surface's current `route` (its servable versions).
    A part whose triple the route already serves keeps its binding (checked when it was bound; the
    watcher rebinds a policy file that changes): a canary-only change does not re-run the stable's checks."""
    stable = route.binding(None)
    if triple_of(stable) == state.active:
        active, pin = stable, route.pin
    else:
        active, pin = bind_triple(state.active, surface_dir, cache, golden, field="active")
    versions = {**route.versions, state.active.policy_version: active}
    canary = None
    if state.canary is not None:
        c = state.canary.triple
        if route.canary is not None and triple_of(route.canary.binding) == c:
            binding, canary_pin = route.canary.binding, route.canary.pin
        else:
            bound, maybe_pin = bind_triple(c, surface_dir, cache, golden, field="canary.triple")
            binding, canary_pin = bound, maybe_pin or BundlePin(c.model_version, c.calibration_version)
        canary = Canary(binding, state.canary.share, state.canary.sticky_key, canary_pin, state.canary.salt)
    shadow_model, fraction = None, 0.0
    if state.shadow_model is not None:
        if route.shadow_model is not None and triple_of(route.shadow_model) == state.shadow_model.triple:
            shadow_model = route.shadow_model
        else:
            shadow_model, _ = bind_triple(state.shadow_model.triple, surface_dir, cache, golden,
                                          field="shadow_model.triple")
        fraction = state.shadow_model.fraction
    if state.shadow_policy is not None and state.shadow_policy not in versions:
        path = surface_dir / f"{state.shadow_policy}.yaml"
        if not path.is_file() or path.name == ROLLOUT_FILE:
            raise ArtifactError(surface_dir / "rollout.yaml", "shadow_policy", f"no policy file {path.name}",
                                f"name one of {sorted(versions)} or remove shadow_policy")
        versions[state.shadow_policy], _ = golden.validate(path, cache, surface=surface_dir.name)
    return replace(route, active=state.active.policy_version, versions=versions, pin=pin, canary=canary,
                   shadow=state.shadow_policy, shadow_model=shadow_model, shadow_model_fraction=fraction)


def state_of(
    route: SurfaceRoute, before: RolloutState | None, *, generation: int, who: str, reason: str,
    rolled_back: bool = False,
) -> RolloutState:
    """The declared state of `route` at `generation`. The previous active triple joins `previous` when the
    active triple changed (a rollback instead consumes the last entry: it is the new active triple)."""
    active = triple_of(route.binding(None))
    previous = list(before.previous) if before is not None else []
    if rolled_back and previous:
        previous.pop()
    elif before is not None and before.active != active:
        previous.append(before.active)
    canary = None
    if route.canary is not None:
        canary = RolloutCanary(triple=triple_of(route.canary.binding), share=route.canary.fraction,
                               sticky_key=route.canary.key, salt=route.canary.salt)
    shadow_model = None
    if route.shadow_model is not None:
        shadow_model = RolloutShadowModel(triple=triple_of(route.shadow_model), fraction=route.shadow_model_fraction)
    return RolloutState(
        surface=route.surface, generation=generation, active=active, canary=canary, shadow_model=shadow_model,
        shadow_policy=route.shadow, previous=previous[-MAX_PREVIOUS:], changed_by=who, reason=reason,
        changed_at=datetime.now(UTC),
    )
