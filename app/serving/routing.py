"""Canary routing: which arm (stable or canary) serves a request, sticky by a hash of one request field.

The arm is a pure function of (surface, key value, salt): blake2b of the three, read as a uniform
number in [0, 1), compared with the canary share. The salt is the rollout generation that started the
canary (`policies/<surface>/rollout.yaml`, `canary.salt`), so every replica and every worker that
applied the same declared state puts a user in the same arm; the same user stays in the same arm while
the canary runs, raising the share only moves users from stable to canary, and a new canary draws a
new split (nobody is in the canary of every experiment).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

__all__ = ["CANARY_KEY", "arm_point", "key_value", "routes_to_canary"]

CANARY_KEY = "context.user_id"  # the default sticky key: a dotted path into the /v1/score body


def key_value(body: Any, key: str) -> str | None:
    """The value at dotted path `key` of a request (a mapping or the parsed envelope), as text;
    None when absent or not a scalar. E.g. `context.user_id`, `context.attributes.user_segment`."""
    node: Any = body
    for part in key.split("."):
        if isinstance(node, Mapping):
            if part not in node:
                return None
            node = node[part]
        elif not part.startswith("_") and part in getattr(type(node), "model_fields", {}):
            node = getattr(node, part)
        else:
            return None
    if isinstance(node, bool) or node is None or not isinstance(node, str | int | float):
        return None
    return str(node)


def arm_point(surface: str, value: str, salt: int = 0) -> float:
    """A uniform point in [0, 1) fixed by (surface, value, salt)."""
    digest = hashlib.blake2b(f"{surface}\x00{value}\x00{salt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def routes_to_canary(surface: str, value: str | None, fraction: float, salt: int = 0) -> bool:
    """True when the request whose sticky key is `value` falls in the canary's share (None: stable)."""
    return value is not None and fraction > 0 and arm_point(surface, value, salt) < fraction
