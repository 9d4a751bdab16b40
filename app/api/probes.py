"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import JSONResponse, Response

from app.api.deps import StateDep

__all__ = ["router"]

router = APIRouter(tags=["probes"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Live: the process answers (says nothing about models)."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready, with the load problems"}})
async def readyz(state: StateDep) -> Response:
    """Ready: a snapshot is loaded and warmed and no shutdown has begun; lists what each surface serves."""
    snapshot = state.snapshot
    body = {
        "status": "draining" if state.drain.begun else ("ready" if state.ready else "not_ready"),
        "surfaces": {name: route.binding(None).versions() for name, route in snapshot.surfaces.items()},
        "problems": list(snapshot.problems),
    }
    return JSONResponse(body, status_code=200 if state.serving else 503)


@router.get("/metrics")
async def metrics(state: StateDep) -> Response:
    """Prometheus exposition of this instance's metrics."""
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
