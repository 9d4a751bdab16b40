"""Immutable serving snapshots: what one request sees, from model to policy, as one object.

A `ServingSnapshot` maps each surface to its servable policy versions; each `PolicyBinding` holds the
compiled policy with the model bundle and calibration it runs on. The service swaps whole snapshots
by reference, so an in-flight request never mixes versions (DESIGN principle 7).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.artifacts.manifest import ModelManifest
from app.errors import NotFound, NotReady
from app.serving.calibration import CalibrationSet
from app.serving.features import FeatureEncoder
from app.serving.first_stage import FirstStage
from app.serving.model_runner import ModelRunner
from app.serving.policy import CompiledPolicy

__all__ = ["BundlePin", "Canary", "ModelBundle", "PolicyBinding", "ServingSnapshot", "SurfaceRoute"]


@dataclass(frozen=True, slots=True)
class BundlePin:
    """The (model version, calibration version) a surface's active policy is bound to, overriding the
    ones its policy file names (persisted as `policies/<surface>/bundle`, see `app.control.pins`)."""

    model_version: str
    calibration_version: str

    def to_dict(self) -> dict[str, str]:
        return {"model_version": self.model_version, "calibration_version": self.calibration_version}


@dataclass(frozen=True, slots=True, eq=False)
class ModelBundle:
    """One model version: its manifest, ONNX session, feature encoder and calibrations."""

    path: Path
    manifest: ModelManifest
    runner: ModelRunner
    encoder: FeatureEncoder
    calibrations: dict[str, CalibrationSet]  # filled while a snapshot is built, then only read
    sample_request: Mapping[str, Any] | None = None
    golden_max_abs_diff: float | None = None  # how closely onnxruntime reproduced golden.json (None: no file)

    @property
    def key(self) -> str:
        return f"{self.manifest.name}/{self.manifest.version}"


@dataclass(frozen=True, slots=True, eq=False)
class PolicyBinding:
    """A servable policy version bound to the model and calibration it names, and to its first stage
    when the policy declares a `cascade` (`app.serving.cascade`)."""

    policy: CompiledPolicy
    bundle: ModelBundle
    calibration: CalibrationSet
    first_stage: FirstStage | None = None

    def versions(self) -> dict[str, str]:
        manifest = self.bundle.manifest
        # The triple only: a first stage is part of the policy version (`answer_versions` names it too).
        return {
            "model": manifest.name,
            "model_version": manifest.version,
            "calibration_version": self.calibration.version,
            "policy_version": self.policy.version,
        }

    def answer_versions(self) -> dict[str, str]:
        """What an answer names: the triple, and the first stage's model and calibration when there is one."""
        versions = self.versions()
        if self.first_stage is not None:
            versions.update(self.first_stage.versions())
        return versions

    def bundles(self) -> list[ModelBundle]:
        """The model bundles this binding runs: its own and its first stage's."""
        if self.first_stage is None:
            return [self.bundle]
        return [self.bundle, self.first_stage.bundle]


@dataclass(frozen=True, slots=True, eq=False)
class Canary:
    """A candidate triple serving `fraction` of a surface's unpinned requests, sticky by `key`.

    key: the request field hashed to choose the arm (`context.user_id` by default; see
    `app.serving.routing`). Requests without that field are served by the stable triple.
    """

    binding: PolicyBinding
    fraction: float
    key: str
    pin: BundlePin
    salt: int = 0  # mixed into the arm hash: the rollout generation that started the canary

    def to_dict(self) -> dict[str, object]:
        return {"fraction": self.fraction, "key": self.key, "salt": self.salt, **self.binding.versions()}


@dataclass(frozen=True, slots=True, eq=False)
class SurfaceRoute:
    """A surface's active policy version, every version a request may pin, and an optional shadow.

    A shadow version is ranked alongside the active one for comparison; it never changes the answer.
    `pin` (when set) is the model/calibration version the active binding runs on instead of the ones
    its policy file names (`versions[active]` is already bound to it). `canary` serves a candidate
    triple to a sticky share of the unpinned requests; `shadow_model` scores a sampled share of them
    off the response path (see `app.serving.shadow_model`).
    """

    surface: str
    active: str
    versions: Mapping[str, PolicyBinding]
    shadow: str | None = None
    pin: BundlePin | None = None
    canary: Canary | None = None
    shadow_model: PolicyBinding | None = None
    shadow_model_fraction: float = 0.0

    def bindings(self) -> list[PolicyBinding]:
        """Every binding this route can score with (servable versions, canary, shadow model)."""
        out = list(self.versions.values())
        if self.canary is not None:
            out.append(self.canary.binding)
        if self.shadow_model is not None:
            out.append(self.shadow_model)
        return out

    def shadow_binding(self) -> PolicyBinding | None:
        return None if self.shadow is None else self.versions.get(self.shadow)

    def binding(self, version: str | None) -> PolicyBinding:
        chosen = self.active if version is None else version
        binding = self.versions.get(chosen)
        if binding is None:
            raise NotFound(
                f"policy version {chosen!r} is not servable on surface {self.surface!r};"
                f" servable versions: {sorted(self.versions)}"
            )
        return binding


@dataclass(frozen=True, slots=True, eq=False)
class ServingSnapshot:
    """Everything the service serves at one moment; replaced whole, never mutated."""

    surfaces: Mapping[str, SurfaceRoute]
    problems: tuple[str, ...] = ()
    loaded_at: float = 0.0
    bundles: Mapping[str, ModelBundle] = field(default_factory=dict)
    # Surfaces with a folder but nothing servable (e.g. a bad active file at start-up) -> why.
    unserved: Mapping[str, str] = field(default_factory=dict)

    def with_route(
        self, route: SurfaceRoute, bundles: Mapping[str, ModelBundle], problems: tuple[str, ...] | None = None
    ) -> ServingSnapshot:
        """A new snapshot with one surface's route (and optionally the problems) replaced; this one is untouched.

        `bundles` keeps only the bundles some route still uses: a model version no binding refers to
        any more is dropped here, and freed once the requests that still hold the old snapshot finish.
        """
        surfaces = {**self.surfaces, route.surface: route}
        used = {id(m) for r in surfaces.values() for b in r.bindings() for m in b.bundles()}
        merged = {**self.bundles, **bundles}
        return ServingSnapshot(
            surfaces=surfaces,
            problems=self.problems if problems is None else problems,
            loaded_at=self.loaded_at, bundles={k: b for k, b in merged.items() if id(b) in used},
            unserved={s: why for s, why in self.unserved.items() if s != route.surface},
        )

    def route(self, surface: str) -> SurfaceRoute:
        route = self.surfaces.get(surface)
        if route is None and surface in self.unserved:
            raise NotReady(f"surface {surface!r} is not served: {self.unserved[surface]}")
        if route is None:
            raise NotFound(f"unknown surface {surface!r}; served surfaces: {sorted(self.surfaces)}")
        return route
