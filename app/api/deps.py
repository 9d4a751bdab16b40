"""FastAPI dependencies as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.api.state import ServiceState

__all__ = ["StateDep", "get_state"]


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.fusionrank
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]
