"""Build a `ServingSnapshot` from the model store and the policies folder.

Layout: `policies/<surface>/<version>.yaml`, `policies/<surface>/active` (one line: the active
version) and optionally `policies/<surface>/shadow` (a version ranked alongside, for comparison);
optionally `policies/<surface>/bundle` (a pin: the model and calibration version the active policy
runs on, see `app.control.pins`);
`model_store/<model>/<version>/{manifest.json, model.onnx, golden.json, calibration/<cal>.json}`.
A bundle whose `golden.json` onnxruntime does not reproduce is refused like a bad sha256.
A policy version that fails any check is left out and reported in `problems`; a surface whose
active version fails is not served at all (never a silent fallback to another version); a shadow
pointer to a version that fails is reported and ignored.

A policy with a `cascade` binds its first-stage bundle too (`app.control.cascade_binding`), with the
same checks; the policy is refused if either bundle fails.

Bundles already loaded (`reuse`) are not loaded again: a policy change never reloads ONNX.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from app.artifacts.loading import (
    check_calibration_for,
    check_policy_against,
    load_calibration,
    load_manifest,
    load_policy,
    read_json,
)
from app.artifacts.policy import ModelRef
from app.artifacts.rollout import ROLLOUT_FILE
from app.control.cascade_binding import bind_first_stage
from app.control.paths import confined
from app.control.pins import PIN_FILE, BundlePin, read_pin
from app.control.pointers import ACTIVE_FILE, SHADOW_FILE, read_pointer
from app.errors import ArtifactError, PolicyError
from app.serving.bundle import ModelBundle, PolicyBinding, ServingSnapshot, SurfaceRoute
from app.serving.calibration import CalibrationSet
from app.serving.features import FeatureEncoder
from app.serving.golden import check_golden
from app.serving.model_runner import ModelRunner
from app.serving.policy import CompiledPolicy

__all__ = ["ACTIVE_FILE", "BundleCache", "load_snapshot", "read_active_version", "surface_dirs"]

log = logging.getLogger("fusionrank.loader")


def read_active_version(surface_dir: Path) -> str:
    version = read_pointer(surface_dir, ACTIVE_FILE)
    if version is None:
        raise ArtifactError(
            surface_dir / ACTIVE_FILE, "", "no active-version pointer (missing or empty)",
            "write the active version into this file",
        )
    return version


def surface_dirs(policies: Path) -> list[Path]:
    """The surface folders under `policies` (hidden entries, such as a ConfigMap's `..data`, skipped)."""
    return sorted(p for p in policies.iterdir() if p.is_dir() and not p.name.startswith("."))


class BundleCache:
    """Model bundles and calibrations loaded so far, so versions shared by policies load once.

    `bundles` seeds the cache with bundles a serving snapshot already holds (their ONNX sessions
    are reused as they are).
    """

    def __init__(
        self, model_store: Path, intra_op_threads: int, bundles: Mapping[str, ModelBundle] | None = None
    ) -> None:
        self.model_store = model_store
        self.intra_op_threads = intra_op_threads
        self.bundles: dict[str, ModelBundle] = dict(bundles or {})

    def bundle(self, name: str, version: str) -> ModelBundle:
        key = f"{name}/{version}"
        if key not in self.bundles:
            path = self.model_store / name / version
            for part in (path, path / "manifest.json", path / "model.onnx"):
                confined(self.model_store, part)  # a symlink out of the store is refused, not followed
            manifest = load_manifest(path)
            runner = ModelRunner(path / "model.onnx", manifest, intra_op_threads=self.intra_op_threads)
            encoder = FeatureEncoder(manifest.features)
            sample = _sample_request(path)
            golden = check_golden(path, manifest, runner, encoder, sample)  # raises on a mismatch
            self.bundles[key] = ModelBundle(
                path=path, manifest=manifest, runner=runner, encoder=encoder,
                calibrations={}, sample_request=sample, golden_max_abs_diff=golden,
            )
        return self.bundles[key]

    def calibration(self, bundle: ModelBundle, version: str) -> CalibrationSet:
        cached = bundle.calibrations.get(version)
        if cached is not None:
            return cached
        path = bundle.path / "calibration" / f"{version}.json"
        confined(self.model_store, path)
        calibration = load_calibration(path)
        check_calibration_for(calibration, bundle.manifest, path)
        compiled = CalibrationSet(calibration, bundle.manifest)
        bundle.calibrations[version] = compiled
        return compiled

    def named_bundle(self, name: str, version: str, policy_path: Path, field: str) -> ModelBundle:
        """The bundle a policy names at `field` (`model`, `cascade.model`); a PolicyError naming it when absent."""
        if f"{name}/{version}" not in self.bundles and not (self.model_store / name / version).is_dir():
            raise PolicyError(
                policy_path, field, f"model {name}/{version} is not in the model store {self.model_store}",
                f"point `{field}` at a bundle of the store (e.g. {_bundles_in(self.model_store)})",
            )
        return self.bundle(name, version)

    def named_calibration(self, bundle: ModelBundle, version: str, policy_path: Path, field: str) -> CalibrationSet:
        """Calibration `version` of `bundle`, named by a policy at `field`; a PolicyError naming it when absent."""
        path = bundle.path / "calibration" / f"{version}.json"
        if version not in bundle.calibrations and not path.is_file():
            on_disk = sorted(p.stem for p in (bundle.path / "calibration").glob("*.json"))
            raise PolicyError(
                policy_path, field, f"calibration {version!r} of {bundle.key} does not exist ({path})",
                f"name one of the bundle's calibrations {on_disk}",
            )
        return self.calibration(bundle, version)

    def bind(self, policy_path: Path, pin: BundlePin | None = None) -> PolicyBinding:
        """Bind a policy file to the model and calibration it names, or to those of `pin`."""
        confined(policy_path.parent.parent, policy_path)  # <policies>/<surface>/<version>.yaml
        policy = load_policy(policy_path)
        if pin is not None:
            policy = policy.model_copy(update={
                "model": ModelRef(name=policy.model.name, version=pin.model_version),
                "calibration_version": pin.calibration_version,
            })
        bundle = self.named_bundle(policy.model.name, policy.model.version, policy_path, "model")
        calibration = self.named_calibration(bundle, policy.calibration_version, policy_path, "calibration_version")
        check_policy_against(policy, bundle.manifest, calibration.version, policy_path)
        first = None if policy.cascade is None else bind_first_stage(self, policy, bundle.manifest, policy_path)
        return PolicyBinding(CompiledPolicy(policy, bundle.manifest), bundle, calibration, first)


def load_snapshot(
    model_store: Path, policies: Path, *, intra_op_threads: int = 1, reuse: Mapping[str, ModelBundle] | None = None
) -> ServingSnapshot:
    """Load every surface under `policies`; problems are collected, not raised."""
    cache = BundleCache(model_store, intra_op_threads, reuse)
    surfaces: dict[str, SurfaceRoute] = {}
    unserved: dict[str, str] = {}
    problems: list[str] = []
    if not policies.is_dir():
        problems.append(f"{policies}: policies folder not found (fix: point FUSIONRANK_POLICIES at it)")
        return ServingSnapshot(surfaces={}, problems=tuple(problems), loaded_at=time.time())
    try:
        folders = surface_dirs(policies)
    except OSError as exc:
        problems.append(f"{policies}: cannot list the policies folder: {exc} (fix: make it readable)")
        folders = []
    for surface_dir in folders:
        try:
            loaded = _load_surface(surface_dir, cache, problems)
        except Exception as exc:  # a bug on one surface's files must not stop the others
            log.exception("loading %s failed unexpectedly", surface_dir)
            problems.append(f"{surface_dir}: cannot be loaded ({type(exc).__name__}: {exc}); surface"
                            f" {surface_dir.name!r} is not served (fix: check its files)")
            loaded = problems[-1]
        if isinstance(loaded, str):
            unserved[surface_dir.name] = loaded
        else:
            surfaces[surface_dir.name] = loaded
    for problem in problems:
        log.error("artifact problem: %s", problem)
    # Keep only bundles some route uses (a pin may leave its policy file's own model unused).
    used = {id(m) for route in surfaces.values() for b in route.bindings() for m in b.bundles()}
    bundles = {key: bundle for key, bundle in cache.bundles.items() if id(bundle) in used}
    return ServingSnapshot(
        surfaces=surfaces, problems=tuple(problems), loaded_at=time.time(), bundles=bundles, unserved=unserved
    )


def _load_surface(surface_dir: Path, cache: BundleCache, problems: list[str]) -> SurfaceRoute | str:
    """The route of one surface folder, or why it is not served; every refused file is added to `problems`."""
    try:
        active = read_active_version(surface_dir)
    except ArtifactError as exc:
        problems.append(str(exc))
        return str(exc)
    versions: dict[str, PolicyBinding] = {}
    for policy_path in sorted(surface_dir.glob("*.yaml")):
        if policy_path.name == ROLLOUT_FILE:  # the declared rollout state, not a policy
            continue
        try:
            versions[policy_path.stem] = cache.bind(policy_path)
        except ArtifactError as exc:
            problems.append(str(exc))
    if active not in versions:
        problems.append(
            f"{surface_dir / ACTIVE_FILE}: active version {active!r} is not loadable; surface"
            f" {surface_dir.name!r} is not served (fix: repair {active}.yaml or point to a good version)"
        )
        return next((p for p in problems if p.startswith(f"{surface_dir / active}.yaml")), problems[-1])
    try:
        pin = read_pin(surface_dir)
        if pin is not None:
            versions[active] = cache.bind(surface_dir / f"{active}.yaml", pin)
    except ArtifactError as exc:
        problems.append(
            f"{exc}; surface {surface_dir.name!r} is not served (fix: repair or remove {surface_dir / PIN_FILE})"
        )
        return problems[-1]
    return SurfaceRoute(surface_dir.name, active, versions, _shadow(surface_dir, versions, active, problems), pin=pin)


def _bundles_in(model_store: Path) -> list[str]:
    if not model_store.is_dir():
        return []
    return sorted(f"{m.name}/{v.name}" for m in model_store.iterdir() if m.is_dir() for v in m.iterdir() if v.is_dir())


def _shadow(surface_dir: Path, versions: Mapping[str, PolicyBinding], active: str, problems: list[str]) -> str | None:
    try:
        shadow = read_pointer(surface_dir, SHADOW_FILE)
    except ArtifactError as exc:
        problems.append(str(exc))
        return None
    if shadow is None or shadow == active:
        return None
    if shadow not in versions:
        problems.append(
            f"{surface_dir / SHADOW_FILE}: shadow version {shadow!r} is not loadable; no shadow on surface"
            f" {surface_dir.name!r} (fix: repair {shadow}.yaml or remove the shadow pointer)"
        )
        return None
    return shadow


def _sample_request(bundle_dir: Path) -> dict[str, Any] | None:
    path = bundle_dir / "sample_request.json"
    if not path.is_file():
        return None
    data = read_json(path, what="sample request (golden batch)")
    return data if isinstance(data, dict) else None
