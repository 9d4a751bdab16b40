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
from app.errors import NotFound
from app.serving.calibration import CalibrationSet
from app.serving.features import FeatureEncoder
from app.serving.model_runner import ModelRunner
from app.serving.policy import CompiledPolicy

__all__ = ["ModelBundle", "PolicyBinding", "ServingSnapshot", "SurfaceRoute"]


@dataclass(frozen=True, slots=True, eq=False)
class ModelBundle:
    """One model version: its manifest, ONNX session, feature encoder and calibrations."""

    path: Path
    manifest: ModelManifest
    runner: ModelRunner
    encoder: FeatureEncoder
    calibrations: dict[str, CalibrationSet]  # filled while a snapshot is built, then only read
    sample_request: Mapping[str, Any] | None = None

    @property
    def key(self) -> str:
        return f"{self.manifest.name}/{self.manifest.version}"


@dataclass(frozen=True, slots=True, eq=False)
class PolicyBinding:
    """A servable policy version bound to the model and calibration it names."""

    policy: CompiledPolicy
    bundle: ModelBundle
    calibration: CalibrationSet

    def versions(self) -> dict[str, str]:
        manifest = self.bundle.manifest
        return {
            "model": manifest.name,
            "model_version": manifest.version,
            "calibration_version": self.calibration.version,
            "policy_version": self.policy.version,
        }


@dataclass(frozen=True, slots=True, eq=False)
class SurfaceRoute:
    """A surface's active policy version, every version a request may pin, and an optional shadow.

    A shadow version is ranked alongside the active one for comparison; it never changes the answer.
    """

    surface: str
    active: str
    versions: Mapping[str, PolicyBinding]
    shadow: str | None = None

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

    def with_route(
        self, route: SurfaceRoute, bundles: Mapping[str, ModelBundle], problems: tuple[str, ...] | None = None
    ) -> ServingSnapshot:
        """A new snapshot with one surface's route (and optionally the problems) replaced; this one is untouched."""
        return ServingSnapshot(
            surfaces={**self.surfaces, route.surface: route},
            problems=self.problems if problems is None else problems,
            loaded_at=self.loaded_at, bundles={**self.bundles, **bundles},
        )

    def route(self, surface: str) -> SurfaceRoute:
        route = self.surfaces.get(surface)
        if route is None:
            raise NotFound(f"unknown surface {surface!r}; served surfaces: {sorted(self.surfaces)}")
        return route
