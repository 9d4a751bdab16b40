"""Which body formats an endpoint accepts, matched exactly: the media type (with `charset=utf-8` as the
only parameter JSON may carry) and no content coding but `identity`. Anything else is refused with 415
naming the header and the accepted values, never guessed at."""

from __future__ import annotations

from app.errors import UnsupportedMediaType
from app.protocol.arrow import ARROW_MEDIA_TYPE

__all__ = ["FEEDBACK_MEDIA_TYPES", "JSON_MEDIA_TYPE", "SCORE_MEDIA_TYPES", "body_media_type"]

JSON_MEDIA_TYPE = "application/json"
SCORE_MEDIA_TYPES = (JSON_MEDIA_TYPE, ARROW_MEDIA_TYPE)
FEEDBACK_MEDIA_TYPES = (JSON_MEDIA_TYPE,)
# Parameters each media type may carry, with the values allowed (lower case, quotes removed).
_PARAMETERS: dict[str, dict[str, frozenset[str]]] = {JSON_MEDIA_TYPE: {"charset": frozenset({"utf-8"})}}


def body_media_type(content_type: str | None, content_encoding: str | None, accepted: tuple[str, ...]) -> str:
    """The body's media type, one of `accepted` (JSON when the request names none); 415 otherwise."""
    if content_encoding is not None and content_encoding.strip().lower() not in ("", "identity"):
        raise UnsupportedMediaType.at(
            "content-encoding", f"{content_encoding!r} is not supported",
            "send the body uncompressed, without a Content-Encoding header (or with `identity`)",
        )
    if content_type is None:
        return JSON_MEDIA_TYPE
    media, *parameters = content_type.split(";")
    media = media.strip().lower()
    if media not in accepted:
        raise UnsupportedMediaType.at(
            "content-type", f"{content_type!r} is not accepted here",
            "send `Content-Type: " + "` or `Content-Type: ".join(accepted) + "`",
        )
    allowed = _PARAMETERS.get(media, {})
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        name, value = name.strip().lower(), value.strip().strip('"').lower()
        if not name and not value:
            continue  # a trailing ";"
        if value not in allowed.get(name, ()):
            raise UnsupportedMediaType.at(
                "content-type", f"parameter {parameter.strip()!r} of {media} is not supported",
                f"send `Content-Type: {media}`" + ("; charset=utf-8 is the only parameter allowed" if allowed else ""),
            )
    return media
