"""Admin API of the policy registry: list, validate, activate, roll back and shadow policy versions.

Every route needs `Authorization: Bearer <token>` (see `app.api.auth`); with no token configured
they all answer 404. Changes run in a worker thread (they read YAML and dry-run the golden batch)
and are audited; a refused change answers 422 (or 404/409) and leaves the served policy as it was.

Every change is a write of the surface's declared rollout file (`policies/<surface>/rollout.yaml`,
see `Registry.declare`): the query parameters `expected_generation` (compare-and-swap: 409 naming the
current generation when someone else wrote first) and `reason` (kept in the file and the audit log)
apply to every POST here and under `/admin/surfaces`; the answer carries the `generation` written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from app.api.deps import AdminDep, RegistryDep
from app.control import PolicyChange, Registry

__all__ = ["ChangeDep", "ChangeParams", "ShadowBody", "VersionBody", "declare", "router"]

router = APIRouter(prefix="/admin/policies", tags=["admin"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or wrong admin token"},
    404: {"description": "admin API disabled (no token configured), unknown surface or version"},
    422: {"description": "the policy failed validation or the golden-batch dry run; nothing changed"},
}


@dataclass(frozen=True, slots=True)
class ChangeParams:
    """The query parameters of every admin change: compare-and-swap generation and the reason."""

    expected_generation: int | None
    reason: str


def _change_params(
    expected_generation: Annotated[int | None, Query(ge=0, description="the rollout generation you read; a"
                                                     " stale one answers 409 naming the current")] = None,
    reason: Annotated[str, Query(max_length=512, description="why: kept in rollout.yaml and the audit log")] = "",
) -> ChangeParams:
    return ChangeParams(expected_generation, reason)


ChangeDep = Annotated[ChangeParams, Depends(_change_params)]


async def declare(
    registry: Registry, surface: str, who: str, params: ChangeParams, change: Callable[[], PolicyChange]
) -> dict[str, Any]:
    """Run `change` as a write of the surface's rollout file; the audit line plus the generation written."""
    done, generation = await anyio.to_thread.run_sync(
        lambda: registry.declare(surface, change, who=who, reason=params.reason,
                                 expected_generation=params.expected_generation)
    )
    return {**done.to_dict(), "generation": generation}


class VersionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(min_length=1, max_length=64, description="policy version, e.g. `2`")


class ShadowBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str | None = Field(max_length=64, description="version to rank alongside; null stops shadowing")


@router.get("", responses=_ERRORS)
async def list_policies(_: AdminDep, registry: RegistryDep) -> dict[str, Any]:
    """List each surface's servable, active, previous and shadow policy versions."""
    return await anyio.to_thread.run_sync(registry.describe)


@router.post("/{surface}/validate", responses=_ERRORS)
async def validate_policy(surface: str, body: VersionBody, _: AdminDep, registry: RegistryDep) -> dict[str, Any]:
    """Validate and dry-run a policy version without activating it."""
    return await anyio.to_thread.run_sync(lambda: registry.check(surface, body.version))


@router.post("/{surface}/activate", responses=_ERRORS)
async def activate_policy(
    surface: str, body: VersionBody, who: AdminDep, registry: RegistryDep, params: ChangeDep
) -> dict[str, Any]:
    """Validate, dry-run and activate a policy version; the old one stays on any failure."""
    return await declare(registry, surface, who, params,
                         lambda: registry.activate_policy(surface, body.version, who=who))


@router.post("/{surface}/rollback", responses={**_ERRORS, 409: {"description": "no previous version"}})
async def rollback_policy(surface: str, who: AdminDep, registry: RegistryDep, params: ChangeDep) -> dict[str, Any]:
    """Serve again the triple served before the last change (one history with `/admin/surfaces`)."""
    return await declare(registry, surface, who, params, lambda: registry.rollback_policy(surface, who=who))


@router.post("/{surface}/shadow", responses=_ERRORS)
async def shadow_policy(
    surface: str, body: ShadowBody, who: AdminDep, registry: RegistryDep, params: ChangeDep
) -> dict[str, Any]:
    """Rank a version alongside the active one (metrics, and debug responses); null stops it."""
    return await declare(registry, surface, who, params, lambda: registry.set_shadow(surface, body.version, who=who))
