"""The memory budget of admitted work: what the bodies being read and parsed may cost, in bytes.

A body of n bytes costs about `amplification × n` bytes of memory while it is parsed (Python objects
for JSON, buffers for Arrow). Admission (app/api/limits.py) reserves that cost before a body is
parsed and gives it back when the answer is sent; past `FUSIONRANK_MEMORY_BUDGET_BYTES` a request is
shed with 503 + Retry-After, unparsed. The budget is one number, set beside the pod's memory limit.
"""

from __future__ import annotations

import math

from app.protocol.cost import PARSE_AMPLIFICATION

__all__ = ["PARSE_AMPLIFICATION", "MemoryBudget", "amplification", "parse_cost"]

# Peak bytes allocated while a body is parsed, per body byte, measured by the decoders for the costliest
# body each lets through (app.protocol.cost; tests/protocol/test_cost.py): JSON 28 (1-character strings
# 26.5x; a body of empty objects is refused before parsing by an object count), Arrow 13 (uncompressed
# int8 columns converted to float64). A compressed Arrow body may cost more than 13x its size, but its
# decoder refuses it before decompressing when it would exceed FUSIONRANK_MAX_DECODED_BYTES.
# A media type not in the table (refused later by the route) is charged as the costliest format.
_UNKNOWN_AMPLIFICATION = max(PARSE_AMPLIFICATION.values())


def amplification(content_type: str | None) -> float:
    """Parse cost per body byte for a `Content-Type` header value (parameters such as charset ignored)."""
    if content_type is None:
        return PARSE_AMPLIFICATION["application/json"]  # the routes' default body type
    media = content_type.split(";", 1)[0].strip().lower()
    return PARSE_AMPLIFICATION.get(media, _UNKNOWN_AMPLIFICATION)


def parse_cost(body_bytes: int, factor: float) -> int:
    """Bytes reserved for parsing a body of `body_bytes` bytes (the body itself included)."""
    return math.ceil(body_bytes * factor)


class MemoryBudget:
    """Bytes reserved by admitted requests against a fixed budget (0: no budget, only counted).

    Used from the event loop only (ASGI middleware), so no lock: a check and its reservation happen
    without an await between them.
    """

    def __init__(self, budget_bytes: int = 0) -> None:
        self.budget_bytes = budget_bytes
        self.reserved_bytes = 0

    def can_ever_fit(self, cost: int) -> bool:
        """False when `cost` is more than the whole budget: such a request can never be admitted."""
        return not self.budget_bytes or cost <= self.budget_bytes

    def try_reserve(self, cost: int) -> bool:
        """Reserve `cost` bytes if they fit beside what is reserved now; False (nothing reserved) if not."""
        if self.budget_bytes and self.reserved_bytes + cost > self.budget_bytes:
            return False
        self.reserved_bytes += cost
        return True

    def release(self, cost: int) -> None:
        self.reserved_bytes -= cost
