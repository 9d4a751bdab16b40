"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST
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
    """Ready: a snapshot is loaded and warmed, no shutdown has begun, and the replica takes work; lists
    what each surface serves and what admitted work holds."""
    snapshot = state.snapshot
    limit = state.settings.ready_saturated_seconds
    saturated = limit > 0 and state.admission.shedding_for() >= limit
    if state.drain.begun:
        status = "draining"
    elif not state.ready:
        status = "not_ready"
    else:
        status = "saturated" if saturated else "ready"
    body = {
        "status": status,
        "surfaces": {name: route.binding(None).versions() for name, route in snapshot.surfaces.items()},
        "problems": list(snapshot.problems),
        "admission": state.admission.describe(),
    }
    return JSONResponse(body, status_code=200 if status == "ready" else 503)


class PrometheusText(Response):
    """The Prometheus text exposition format (documented as such in the OpenAPI description)."""

    media_type = CONTENT_TYPE_LATEST


@router.get(
    "/metrics", response_class=PrometheusText,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                     "description": "Prometheus text exposition format"}},
)
async def metrics(state: StateDep) -> Response:
    """Prometheus exposition of this replica's metrics (every worker's, merged, with --workers N)."""
    return PrometheusText(state.metrics.exposition())
