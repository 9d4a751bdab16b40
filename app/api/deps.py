"""FastAPI dependencies as `Annotated` aliases.

All are `async def` although none awaits: FastAPI runs a plain `def` dependency on a worker thread,
and that round trip (a thread hand-off and back, contending for the GIL) cost every request, probes
and `/v1/score` included, more than the dependency's own work.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials

from app.api.auth import admin_bearer, authenticate, authorization_header
from app.api.state import ServiceState
from app.control.registry import Registry
from app.errors import NotReady

__all__ = ["AdminDep", "RegistryDep", "StateDep", "get_admin", "get_registry", "get_state"]


async def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.fusionrank
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


async def get_admin(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(admin_bearer)], state: StateDep
) -> str:
    """The name of the admin token the request presents (404 when the admin API is off, 401 if wrong)."""
    return authenticate(authorization_header(credentials), state.settings.admin_credentials(), state.metrics)


AdminDep = Annotated[str, Depends(get_admin)]


async def get_registry(request: Request) -> Registry:
    registry: Registry | None = getattr(request.app.state, "policy_registry", None)
    if registry is None:
        raise NotReady("the registry is not started yet")
    return registry


RegistryDep = Annotated[Registry, Depends(get_registry)]
