"""Admin API of the model lifecycle: the registry view, triple activation, rollback, canary, shadow model.

Same rules as the policy admin API (`app.api.admin`): bearer token, work in a worker thread, every
change audited, a refused change answers 404/409/422 and leaves the surface serving what it served.
"""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from app.api.admin import ChangeDep, declare
from app.api.deps import AdminDep, RegistryDep, StateDep
from app.control.lifecycle import Triple
from app.control.store import describe_store
from app.serving.bundle import PolicyBinding, SurfaceRoute

__all__ = ["CanaryBody", "ShadowModelBody", "TripleBody", "router"]

router = APIRouter(tags=["admin"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or wrong admin token"},
    404: {"description": "admin API disabled (no token configured), unknown surface, model or version"},
    409: {"description": "stale expected_generation (names the current one), nothing to roll back to or"
                        " promote, the canary is the stable triple, or the store is read-only"},
    422: {"description": "a check failed (sha256, golden batch, cross-reference, dry run); nothing changed"},
}
_Version = Field(default=None, min_length=1, max_length=64)


class TripleBody(BaseModel):
    """Any of the three versions; omitted ones stay as the surface serves them now."""

    model_config = ConfigDict(extra="forbid")

    model_version: str | None = _Version
    calibration_version: str | None = _Version
    policy_version: str | None = _Version

    def triple(self) -> Triple:
        return Triple(self.model_version, self.calibration_version, self.policy_version)


class CanaryBody(TripleBody):
    fraction: float = Field(gt=0, lt=1, description="share of unpinned requests served by the canary")
    key: str | None = Field(default=None, max_length=128, pattern=r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$",
                            description="dotted request field hashed for stickiness (default context.user_id)")


class ShadowModelBody(TripleBody):
    fraction: float = Field(default=0.0, ge=0, le=1, description="share of requests scored; 0 stops the shadow")




@router.get("/admin/models", responses=_ERRORS)
async def list_models(_: AdminDep, state: StateDep) -> dict[str, Any]:
    """Every model version in the store (manifest summary, sha256, calibrations) and who serves what."""
    models = await anyio.to_thread.run_sync(lambda: describe_store(state.settings.model_store))
    snapshot = state.snapshot
    serving: dict[str, Any] = {}
    for surface, route in sorted(snapshot.surfaces.items()):
        serving[surface] = {
            "stable": route.binding(None).versions(),
            "pinned": None if route.pin is None else route.pin.to_dict(),
            "canary": None if route.canary is None else route.canary.to_dict(),
            "shadow_model": None if route.shadow_model is None else {
                "fraction": route.shadow_model_fraction, **route.shadow_model.versions()
            },
        }
    loaded = {key: {"golden_max_abs_diff": b.golden_max_abs_diff} for key, b in snapshot.bundles.items()}
    for entry in models:
        key = f"{entry['model']}/{entry['version']}"
        entry["loaded"] = key in loaded
        entry["golden_max_abs_diff"] = loaded.get(key, {}).get("golden_max_abs_diff")
        entry["served_by"] = sorted(
            f"{surface}:{arm}" for surface, route in snapshot.surfaces.items()
            for arm, binding in _arms(route)
            if binding is not None and binding.bundle.key == key
        )
    return {"model_store": str(state.settings.model_store), "models": models, "surfaces": serving}


def _arms(route: SurfaceRoute) -> list[tuple[str, PolicyBinding | None]]:
    canary = route.canary.binding if route.canary is not None else None
    return [("stable", route.binding(None)), ("canary", canary), ("shadow_model", route.shadow_model)]


@router.get("/admin/rollouts/{surface}", responses=_ERRORS)
async def rollout(surface: str, _: AdminDep, registry: RegistryDep) -> dict[str, Any]:
    """The surface's declared rollout file (null: none yet) and the generation this replica serves."""
    return await anyio.to_thread.run_sync(lambda: registry.declared(surface))


@router.post("/admin/surfaces/{surface}/activate", responses=_ERRORS)
async def activate(
    surface: str, body: TripleBody, who: AdminDep, bundles: RegistryDep, params: ChangeDep
) -> dict[str, Any]:
    """Check and serve a (model, calibration, policy) triple; omitted versions stay as served."""
    return await declare(bundles, surface, who, params, lambda: bundles.activate(surface, body.triple(), who=who))


@router.post("/admin/surfaces/{surface}/rollback", responses=_ERRORS)
async def rollback(surface: str, who: AdminDep, bundles: RegistryDep, params: ChangeDep) -> dict[str, Any]:
    """Serve the triple served before the last activation (the last of the rollout file's `previous`)."""
    return await declare(bundles, surface, who, params, lambda: bundles.rollback(surface, who=who))


@router.post("/admin/surfaces/{surface}/canary", responses=_ERRORS)
async def canary(
    surface: str, body: CanaryBody, who: AdminDep, bundles: RegistryDep, params: ChangeDep
) -> dict[str, Any]:
    """Serve a candidate triple to a sticky share of the unpinned requests."""
    return await declare(bundles, surface, who, params,
                         lambda: bundles.start_canary(surface, body.triple(), body.fraction, body.key, who=who))


@router.post("/admin/surfaces/{surface}/canary/promote", responses=_ERRORS)
async def promote(surface: str, who: AdminDep, bundles: RegistryDep, params: ChangeDep) -> dict[str, Any]:
    """Serve the canary triple to everyone (checked like an activation) and end the canary."""
    return await declare(bundles, surface, who, params, lambda: bundles.promote(surface, who=who))


@router.post("/admin/surfaces/{surface}/canary/abort", responses=_ERRORS)
async def abort(surface: str, who: AdminDep, bundles: RegistryDep, params: ChangeDep) -> dict[str, Any]:
    """End the canary; the stable triple serves every request again."""
    return await declare(bundles, surface, who, params, lambda: bundles.abort(surface, who=who))


@router.post("/admin/surfaces/{surface}/shadow-model", responses=_ERRORS)
async def shadow_model(
    surface: str, body: ShadowModelBody, who: AdminDep, bundles: RegistryDep, params: ChangeDep
) -> dict[str, Any]:
    """Score a sampled share of the requests with a candidate triple off the response path; fraction 0 stops."""
    want = body.triple() if body.fraction > 0 else None
    return await declare(bundles, surface, who, params,
                         lambda: bundles.set_shadow_model(surface, want, body.fraction, who=who))
