"""Read a request body with a size limit, before any of it is parsed."""

from __future__ import annotations

from fastapi import Request

from app.errors import InvalidRequest, PayloadTooLarge

__all__ = ["read_body", "read_json_body"]


async def read_json_body(request: Request, limit: int) -> bytes:
    """Bytes of a JSON body of at most `limit` bytes (413 past it, without reading the rest)."""
    content_type = request.headers.get("content-type", "application/json")
    if not content_type.split(";")[0].strip().lower().endswith("json"):
        raise InvalidRequest.at(
            "content-type", f"{content_type!r} is not JSON", "send `Content-Type: application/json`"
        )
    return await read_body(request, limit)


async def read_body(request: Request, limit: int) -> bytes:
    """Bytes of a body of at most `limit` bytes, whatever its type (413 past it, without reading the rest)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge.at(
        "body", f"{size} bytes is more than the limit of {limit}",
        "send fewer candidates per request, or raise FUSIONRANK_MAX_BODY_BYTES",
    )
