"""Triples: what a surface serves, (model, calibration, policy), and how an admin's request names one.

A surface serves its active policy bound to the model and calibration the policy file names, or to a
*pin* (`policies/<surface>/bundle`, see `app.control.pins`) that overrides them. An admin request
names any of the three versions; omitted parts stay as the surface serves them now. `resolve` turns
the request into the (policy version, pin) the registry serves; it reads no file beyond existence.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.control.pointers import VERSION_PATTERN
from app.errors import InvalidRequest, NotFound
from app.serving.bundle import BundlePin, PolicyBinding, SurfaceRoute

__all__ = ["Served", "Triple", "describe", "resolve"]


@dataclass(frozen=True, slots=True)
class Triple:
    """What an admin asks for; None parts stay as the surface serves them."""

    model_version: str | None = None
    calibration_version: str | None = None
    policy_version: str | None = None


@dataclass(frozen=True, slots=True)
class Served:
    """What a surface served at some point: its active policy version and its pin (None: the policy's own
    model and calibration). One entry of the registry's rollback history."""

    policy_version: str
    pin: BundlePin | None

    @classmethod
    def of(cls, route: SurfaceRoute) -> Served:
        return cls(route.active, route.pin)


def resolve(route: SurfaceRoute, want: Triple, policies: Path, model_store: Path) -> tuple[str, BundlePin]:
    """The policy version and pin to serve for `want`: omitted parts stay as served now."""
    for field, value in (("model_version", want.model_version),
                         ("calibration_version", want.calibration_version),
                         ("policy_version", want.policy_version)):
        if value is not None and not VERSION_PATTERN.match(value):
            raise InvalidRequest.at(field, f"{value!r} is not a version name", "use e.g. `2`")
    serving = route.binding(None).versions()
    policy_version = want.policy_version or route.active
    model_version = want.model_version or serving["model_version"]
    calibration = want.calibration_version or serving["calibration_version"]
    policy_path = policies / route.surface / f"{policy_version}.yaml"
    if not policy_path.is_file() or policy_path.name == "rollout.yaml":
        raise NotFound(f"{policy_path}: no policy version {policy_version!r} for surface {route.surface!r}")
    model_dir = model_store / serving["model"] / model_version
    if not model_dir.is_dir():
        raise NotFound(f"{model_dir}: no model version {model_version!r} of {serving['model']!r} in the store")
    if want.calibration_version is None and not (model_dir / "calibration" / f"{calibration}.json").is_file():
        raise InvalidRequest.at(
            "calibration_version",
            f"model {serving['model']}/{model_version} has no calibration {calibration!r} (the one served now)",
            "name the calibration version to serve with this model",
        )
    return policy_version, BundlePin(model_version, calibration)


def describe(binding: PolicyBinding) -> str:
    """`model demo_ranker/1, calibration 2, policy 3`: a triple as the audit log writes it."""
    v = binding.versions()
    return f"model {v['model']}/{v['model_version']}, calibration {v['calibration_version']}, " \
           f"policy {v['policy_version']}"
