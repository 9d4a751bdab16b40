"""`GET /explain`: one self-contained page to look at a ranking (off unless `FUSIONRANK_EXPLAIN_PAGE=true`).

The page (app/api/static/explain.html: inline CSS and JavaScript, no CDN, no build step) sends a
request with `options.debug` to `/v1/score` and draws each candidate's utility as a stacked bar of
its terms, the filtered candidates with the rule that removed them, the versions and arm, and each
surface's rollout state from `/v1/surfaces`. `GET /explain/requests` gives it the bundles' sample requests.

With an admin token configured both routes need it, checked by `app.api.auth.authenticate` (constant
time): as `Authorization: Bearer <token>`, or, so that a browser can open the page, as HTTP Basic
credentials whose password is the token (any user name); a refusal asks the browser for them.
"""

from __future__ import annotations

import base64
import binascii
from functools import cache
from http import HTTPStatus
from importlib import resources
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from app.api.auth import authenticate
from app.api.deps import StateDep
from app.api.errors import error_response
from app.api.state import ServiceState
from app.errors import NotFound, Unauthorized

__all__ = ["router"]

router = APIRouter(prefix="/explain", tags=["explain"], include_in_schema=False)

_CHALLENGE = {"WWW-Authenticate": 'Basic realm="fusionrank explain", charset="UTF-8"'}
# The page only reads: no framing by other sites, no scripts or styles but its own inline ones.
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline';"
    " connect-src 'self'; img-src data:; frame-ancestors 'none'",
}


@cache
def _page() -> bytes:
    """The page, read once from the package."""
    return (resources.files("app.api") / "static" / "explain.html").read_bytes()


def _bearer(authorization: str | None) -> str | None:
    """`Authorization` as a bearer header: Basic credentials become `Bearer <password>`."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return authorization
    try:
        _, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return f"Bearer {password}"


async def _access(request: Request, state: ServiceState) -> Response | None:
    """None when the request may see the page; else the answer: 404 when the page is off, and with admin
    tokens configured 401 (asking the browser for credentials) without a valid one."""
    if not state.settings.explain_page:
        raise NotFound("the explain page is off: set FUSIONRANK_EXPLAIN_PAGE=true to serve /explain")
    credentials = state.settings.admin_credentials()
    if not credentials:
        return None
    try:
        authenticate(_bearer(request.headers.get("authorization")), credentials, state.metrics)
    except Unauthorized as exc:
        message = exc.message + " (a browser sends the admin token as the password of HTTP Basic credentials)"
        return error_response(HTTPStatus.UNAUTHORIZED, exc.code, message, exc.details, _CHALLENGE)
    return None


@router.get("", response_class=HTMLResponse)
async def explain_page(request: Request, state: StateDep) -> Response:
    """The explain page."""
    refusal = await _access(request, state)
    if refusal is not None:
        return refusal
    return HTMLResponse(_page(), headers=_PAGE_HEADERS)


@router.get("/requests")
async def sample_requests(request: Request, state: StateDep) -> Response:
    """The sample request of each served surface's stable model bundle (the page's defaults)."""
    refusal = await _access(request, state)
    if refusal is not None:
        return refusal
    samples: dict[str, Any] = {}
    for name, route in sorted(state.snapshot.surfaces.items()):
        sample = route.binding(None).bundle.sample_request
        if sample is not None:
            samples[name] = {**sample, "surface": name}
    return JSONResponse({"requests": samples}, headers={"Cache-Control": "no-store"})
