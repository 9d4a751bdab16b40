"""Admin authentication: bearer tokens compared in constant time; no token configured, no admin API.

`admin_bearer` declares the scheme in the OpenAPI description (`HTTPBearer`, "AdminToken") without
checking anything itself (`auto_error=False`): `authenticate` does, and answers in the error envelope.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from app.errors import NotFound, Unauthorized
from app.monitoring.metrics import ServiceMetrics

__all__ = ["admin_bearer", "authenticate", "authorization_header"]

admin_bearer = HTTPBearer(
    auto_error=False, scheme_name="AdminToken",
    description="An admin token of FUSIONRANK_ADMIN_TOKENS / FUSIONRANK_ADMIN_TOKEN: `Authorization: Bearer <token>`."
    " No token configured: the admin API answers 404.",
)


def authorization_header(credentials: HTTPAuthorizationCredentials | None) -> str | None:
    """The `Authorization` value `HTTPBearer` parsed (None when absent or not a bearer token)."""
    return None if credentials is None else f"{credentials.scheme} {credentials.credentials}"


def _digest(token: str) -> bytes:
    # Hashing first makes both sides the same length, so compare_digest's time says nothing about it.
    return hashlib.sha256(token.encode("utf-8")).digest()


def authenticate(authorization: str | None, credentials: Mapping[str, SecretStr], metrics: ServiceMetrics) -> str:
    """The name of the token in `Authorization: Bearer <token>`; never logs or echoes the token.

    Raises `NotFound` when no token is configured (the admin API is off) and `Unauthorized` for a
    missing or wrong token (counted in `fusionrank_admin_auth_failures_total{reason}`).
    """
    if not credentials:
        raise NotFound(
            "the admin API is disabled: no admin token is configured"
            " (set FUSIONRANK_ADMIN_TOKENS or FUSIONRANK_ADMIN_TOKEN to enable it)"
        )
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        metrics.admin_auth_failures.labels("missing").inc()
        raise Unauthorized("missing admin token: send `Authorization: Bearer <token>`")
    presented = _digest(token)
    matched: str | None = None
    for name, secret in credentials.items():  # check every token: the time does not depend on which matched
        if hmac.compare_digest(presented, _digest(secret.get_secret_value())) and matched is None:
            matched = name
    if matched is None:
        metrics.admin_auth_failures.labels("invalid").inc()
        raise Unauthorized("invalid admin token")
    return matched
