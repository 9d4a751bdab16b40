"""`GET /v1/surfaces` and `GET /v1/surfaces/{surface}`: what a client needs to call each surface (public).

The documents are rendered once per installed snapshot (`app.protocol.discovery` does the reading),
kept as bytes with their ETag, and answered with `Cache-Control` and `304 Not Modified` on a matching
`If-None-Match`. A request costs a check that the snapshot still holds the same bindings, not a render.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from app import __version__
from app.api.deps import StateDep
from app.api.limits import DEADLINE_HEADER
from app.api.state import ServiceState
from app.errors import NotReady
from app.protocol.arrow import ARROW_MEDIA_TYPE
from app.protocol.discovery import RequestLimits, SurfaceDescription, SurfaceList, describe_surfaces
from app.protocol.envelope import MAX_COLUMNS
from app.protocol.media import JSON_MEDIA_TYPE, SCORE_MEDIA_TYPES
from app.protocol.schemas import MAX_ID_LENGTH
from app.serving.bundle import ServingSnapshot

__all__ = ["CACHE_CONTROL", "rollout_state", "router"]

router = APIRouter(prefix="/v1/surfaces", tags=["discovery"])

# Replicas converge on a rollout change within the watcher's interval (5 s by default): a client may
# reuse a description that long, then revalidate it with If-None-Match.
CACHE_CONTROL = "public, max-age=5"
# What the registry's description of a surface may show publicly: the declared rollout state, never
# file paths or the reasons a file was refused (those stay behind the admin token).
_ROLLOUT_KEYS = ("active", "previous", "shadow", "canary", "shadow_model", "generation", "serving")


def rollout_state(registry: Any) -> dict[str, dict[str, Any]]:
    """Surface -> its declared rollout state, read from the control plane's `Registry.describe()` (the
    admin API's view): only the keys in `_ROLLOUT_KEYS`, whichever the registry reports."""
    if registry is None:
        return {}
    described = registry.describe()
    surfaces: Mapping[str, Any] = described.get("surfaces", {}) if isinstance(described, Mapping) else {}
    return {
        name: {key: state[key] for key in _ROLLOUT_KEYS if key in state}
        for name, state in surfaces.items() if isinstance(state, Mapping)
    }


@dataclass(eq=False)
class _Rendered:
    """The documents of one snapshot: bytes and ETag of the list and of each surface."""

    bindings: tuple[Any, ...]  # what the documents were read from (see `_bindings`)
    listing: tuple[bytes, str]
    surfaces: dict[str, tuple[bytes, str]] = field(default_factory=dict)

    def current(self, snapshot: ServingSnapshot) -> bool:
        return _same(self.bindings, _bindings(snapshot))


def _bindings(snapshot: ServingSnapshot) -> tuple[Any, ...]:
    """What a description depends on, per surface: the route's state by value, each binding's compiled
    policy by identity (a reloaded file is a new object) and its versions by value. No strong reference:
    a retired snapshot's model is not kept alive by this cache."""
    out: list[Any] = []
    for name, route in sorted(snapshot.surfaces.items()):
        canary = route.canary
        out.append((name, route.active, route.shadow, None if canary is None else (canary.fraction, canary.key)))
        arms = [] if canary is None else [("~canary", canary.binding)]
        for version, binding in [*sorted(route.versions.items()), *arms]:
            out.append((version, tuple(binding.versions().items()), binding.bundle.manifest.model_sha256,
                        weakref.ref(binding.policy)))
    out.append(tuple(sorted(snapshot.unserved)))
    return tuple(out)


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    # weakref.ref equality: equal while both referents live and are equal (the same object); a dead one
    # equals only itself, so a retired binding never matches a new one that reuses its address.
    return len(a) == len(b) and all(x == y for x, y in zip(a, b, strict=True))


def _limits(state: ServiceState) -> RequestLimits:
    settings = state.settings
    return RequestLimits(
        max_candidates=settings.max_candidates,
        max_body_bytes=settings.max_body_bytes,
        max_decoded_bytes=settings.decoded_bytes_limit(),
        max_columns=MAX_COLUMNS,
        max_id_length=MAX_ID_LENGTH,
        content_types=list(SCORE_MEDIA_TYPES),
        accept=[JSON_MEDIA_TYPE, ARROW_MEDIA_TYPE],
        deadline_header=DEADLINE_HEADER,
        deadline_seconds=settings.request_deadline_seconds,
    )


def _encoded(document: SurfaceList | SurfaceDescription) -> tuple[bytes, str]:
    body = orjson.dumps(document.model_dump(mode="json"))
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


async def _rendered(request: Request, state: ServiceState) -> _Rendered:
    """The documents of the served snapshot, rendered on the first request after it was installed."""
    snapshot = state.snapshot
    cached: _Rendered | None = getattr(request.app.state, "discovery", None)
    if cached is not None and cached.current(snapshot):
        return cached
    registry = getattr(request.app.state, "policy_registry", None)
    rollout = await anyio.to_thread.run_sync(rollout_state, registry)  # takes the registry's lock
    listing = describe_surfaces(snapshot, _limits(state), rollout, __version__)
    rendered = _Rendered(_bindings(snapshot), _encoded(listing))
    for description in listing.surfaces:
        rendered.surfaces[description.surface] = _encoded(description)
    request.app.state.discovery = rendered
    return rendered


def _answer(request: Request, body: bytes, etag: str) -> Response:
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    asked = request.headers.get("if-none-match", "")
    if etag in (tag.strip().removeprefix("W/") for tag in asked.split(",")) or asked.strip() == "*":
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=JSON_MEDIA_TYPE, headers=headers)


_CACHED = {"description": "not modified (If-None-Match matched the ETag)"}


@router.get("", response_model=SurfaceList, responses={304: _CACHED})
async def list_surfaces(request: Request, state: StateDep) -> Response:
    """Every served surface: arms, tasks, features, attributes, limits and rollout state."""
    body, etag = (await _rendered(request, state)).listing
    return _answer(request, body, etag)


@router.get("/{surface}", response_model=SurfaceDescription,
            responses={304: _CACHED, 404: {"description": "unknown surface"},
                       503: {"description": "the surface has files but nothing servable"}})
async def get_surface(surface: str, request: Request, state: StateDep) -> Response:
    """One surface: what a request to it carries and which triples answer it."""
    rendered = await _rendered(request, state)
    found = rendered.surfaces.get(surface)
    if found is None:
        state.snapshot.route(surface)  # raises NotFound (unknown) or NotReady (unserved), naming the fix
        found = (await _rendered(request, state)).surfaces.get(surface)  # installed meanwhile: render again
        if found is None:
            raise NotReady(f"surface {surface!r} changed while it was described; retry")
    return _answer(request, *found)
